"""Whatever `POST /api/track` is sent, it answers 200, 400, 401 or 413 — never 500 — and what
it accepts can always be written to ClickHouse."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testing.tracking import count, post, recent, stored
from tracking import records, store
from tracking.buffer import get_buffer
from tracking.flusher import Flusher

pytestmark = pytest.mark.django_db

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)
timestamps = st.sampled_from(
    ["2026-11-27T12:00:00Z", "9999-12-31T23:59:59-23:59", "1970-01-01T00:00:00", "x", "2024-13-01", ""]
) | st.text(max_size=40)
fuzzy_events = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "event": st.text(max_size=40) | json_values,
            "distinct_id": st.text(max_size=40) | json_values,
            "timestamp": timestamps | json_values,
            "properties": st.dictionaries(st.text(max_size=10), json_values, max_size=5) | json_values,
            "event_id": st.uuids().map(str) | st.text(max_size=40) | json_values,
            "extra": json_values,
        },
    ),
    max_size=6,
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"events": fuzzy_events}).map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"events": fuzzy_events | json_values}, optional={"x": json_values}).map(
        lambda v: json.dumps(v).encode()
    )
)


def assert_insertable(payloads: list[bytes]) -> None:
    """Every buffered record decodes and becomes rows ClickHouse's String columns accept."""
    for payload in payloads:
        for row in store.rows([records.decode(payload)]):
            for value in row:
                if isinstance(value, str):
                    value.encode("utf-8")
            json.loads(row[5])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, key_kind=st.sampled_from(["good", "bad", "none"]))
def test_any_body_gets_a_contract_status_never_500(client, project, body, key_kind):
    key = {"good": project.write_key, "bad": "otk_" + "z" * 30, "none": None}[key_kind]
    response = post(client, body, key)
    assert response.status_code in {200, 400, 401, 413}, response.content
    payload = response.json()
    if response.status_code == 200:
        assert key_kind == "good"
        assert payload["accepted"] >= 1
    else:
        assert payload["error"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(st.text(min_size=1, max_size=50).filter(str.strip), min_size=1, max_size=5),
    properties=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_whatever_is_accepted_is_insertable(client, project, names, properties):
    spool = get_buffer()
    events = [
        {"event": name, "distinct_id": name, "timestamp": recent(), "properties": properties}
        for name in names
    ]
    response = post(client, {"events": events}, project.write_key)
    assert response.status_code == 200
    batch = spool.read(10_000)
    assert_insertable([records.encode(r) for r in batch.records])
    spool.commit(batch)


def test_awkward_but_valid_text_reaches_clickhouse_unchanged(client, project, engine):
    awkward = {
        "nul": "a\x00b",
        "emoji": "\U0001f600",
        "lone": "\ud800",
        "big": 2**70,
        "nested": {"a": [1, {"b": None}]},
        "quote": 'it\'s "quoted"',
    }
    body = json.dumps(
        {
            "events": [
                {"event": "e\ud800", "distinct_id": "ü\x00", "timestamp": recent(), "properties": awkward}
            ]
        }
    )
    assert post(client, body, project.write_key).status_code == 200
    assert Flusher().run_once().state == "flushed"
    assert count() == 1
    ((name, distinct, props),) = stored("SELECT event, distinct_id, properties FROM opentrace.events")
    assert (name, distinct) == ("e\ufffd", "ü\x00")
    decoded = json.loads(props)
    assert decoded == {**awkward, "lone": "\ud800"}
