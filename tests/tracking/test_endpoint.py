"""`POST /api/track` through Django's test client: every status code the SPEC names, and
what is buffered when the answer is 200 (and nothing when it is not)."""

from __future__ import annotations

import json
import uuid

import pytest

from testing.tracking import event, post, recent
from tracking.buffer import get_buffer


def buffered_events() -> list:
    batch = get_buffer().read(100_000)
    return [] if batch is None else [e for record in batch.records for e in record.events]


def test_it_accepts_events_and_buffers_them_for_the_project(client, project, buffer):
    response = post(client, {"events": [event(1), event(2)]}, project.write_key)
    assert response.status_code == 200
    assert response.json() == {"accepted": 2}
    batch = buffer.read(100)
    assert [r.project_id for r in batch.records] == [project.pk]
    assert [e.distinct_id for e in batch.records[0].events] == ["user-1", "user-2"]
    assert batch.records[0].events[0].properties == {"path": "/page/1", "n": 1}


def test_events_without_an_event_id_get_one_at_acceptance(client, project):
    given = str(uuid.uuid4())
    post(client, {"events": [event(1), event(2, event_id=given)]}, project.write_key)
    first, second = buffered_events()
    assert isinstance(first.event_id, uuid.UUID)
    assert str(second.event_id) == given


def test_a_timestamp_without_an_offset_is_utc_and_milliseconds_are_kept(client, project):
    post(client, {"events": [event(timestamp="2024-03-01T10:20:30.456")]}, project.write_key)
    (stored,) = buffered_events()
    assert stored.timestamp_ms == 1709288430456


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"events": {}}', "events must be a list"),
        (b'{"events": []}', "events must not be empty"),
        (b'{"events": [1]}', "events[0] must be an object"),
        (b'{"events": [], "extra": 1}', "unknown field(s): extra"),
        (b'{"events": [{"event": "x", "distinct_id": "u", "timestamp": NaN}]}', "NaN"),
        (
            b'{"events": [{"event": "x", "distinct_id": "u", "timestamp": "t", "properties": {"a": 1e999}}]}',
            "out of range",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_a_malformed_body_is_400_naming_the_problem(client, project, body, message):
    response = post(client, body, project.write_key)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert buffered_events() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event": None}, "events[0].event must be a string"),
        ({"event": 7}, "events[0].event must be a string"),
        ({"event": " "}, "events[0].event must not be empty"),
        ({"event": "e" * 201}, "longer than 200"),
        ({"distinct_id": ["u"]}, "events[0].distinct_id must be a string"),
        ({"timestamp": 1700000000}, "events[0].timestamp must be an ISO 8601 date-time string"),
        ({"timestamp": "yesterday"}, "'yesterday' is not an ISO 8601 date-time"),
        ({"timestamp": "2024-02-30T00:00:00Z"}, "is not an ISO 8601 date-time"),
        ({"timestamp": "1969-12-31T23:59:59Z"}, "outside 1970-01-01"),
        ({"timestamp": "2100-01-01T00:00:00Z"}, "outside 1970-01-01"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "outside 1970-01-01"),
        ({"timestamp": "9999-12-31T23:59:59-23:59"}, "outside 1970-01-01"),
        ({"properties": [1, 2]}, "events[0].properties must be an object"),
        ({"properties": "a=1"}, "events[0].properties must be an object"),
        ({"event_id": "not-a-uuid"}, "events[0].event_id 'not-a-uuid' is not a UUID"),
        ({"event_id": 12}, "events[0].event_id must be a UUID string"),
        ({"propertes": {}}, "unknown field(s): propertes"),
    ],
)
def test_a_wrong_type_or_value_is_400_naming_the_field(client, project, change, message):
    response = post(client, {"events": [event(0, **change)]}, project.write_key)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("field", ["event", "distinct_id", "timestamp"])
def test_a_missing_field_is_400(client, project, field):
    body = event()
    del body[field]
    response = post(client, {"events": [event(1), body]}, project.write_key)
    assert response.status_code == 400
    assert response.json()["error"] == f"events[1].{field} is missing"
    assert buffered_events() == []  # one bad event refuses the request: nothing half-accepted


def test_null_properties_are_empty_properties(client, project):
    assert post(client, {"events": [event(properties=None)]}, project.write_key).status_code == 200
    assert buffered_events()[0].properties == {}


@pytest.mark.parametrize("n", [1001, 10_000])
def test_too_many_events_is_400(client, project, n):
    compact = {"event": "e", "distinct_id": "u", "timestamp": recent()}
    body = json.dumps({"events": [compact] * n}).encode()
    assert len(body) < 1024 * 1024  # refused for the count, not the size
    response = post(client, body, project.write_key)
    assert response.status_code == 400
    assert f"too many events: {n} (at most 1000" in response.json()["error"]


def test_a_thousand_events_are_accepted(client, project):
    compact = {"event": "e", "distinct_id": "u", "timestamp": recent()}
    response = post(client, {"events": [compact] * 1000}, project.write_key)
    assert response.json() == {"accepted": 1000}


def test_a_body_over_one_mebibyte_is_413(client, project):
    padding = "x" * (2 * 1024 * 1024)
    response = post(client, {"events": [event(properties={"pad": padding})]}, project.write_key)
    assert response.status_code == 413
    assert buffered_events() == []


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(client, project):
    response = client.generic(
        "POST",
        "/api/track",
        b"{}",
        content_type="application/json",
        HTTP_X_OPENTRACE_KEY=project.write_key,
        CONTENT_LENGTH=str(5 * 1024 * 1024),
    )
    assert response.status_code == 413


def test_a_malformed_content_length_is_400(client, project):
    response = client.generic(
        "POST", "/api/track", b"{}", HTTP_X_OPENTRACE_KEY=project.write_key, CONTENT_LENGTH="12abc"
    )
    assert response.status_code == 400


@pytest.mark.parametrize("key", [None, "", "otk_unknown", "x" * 5000])
def test_an_unknown_or_missing_key_is_401(client, project, key):
    response = post(client, {"events": [event()]}, key)
    assert response.status_code == 401
    assert "X-OpenTrace-Key" in response.json()["error"]
    assert buffered_events() == []


def test_a_disabled_project_is_401(client, project):
    project.enabled = False
    project.save()
    assert post(client, {"events": [event()]}, project.write_key).status_code == 401


def test_the_key_is_checked_before_the_body_is_parsed(client, project):
    assert post(client, b"{not json", "otk_unknown").status_code == 401


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch", "head", "options"])
def test_any_method_but_post_is_405(client, project, method):
    response = getattr(client, method)("/api/track", HTTP_X_OPENTRACE_KEY=project.write_key)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_it_needs_no_csrf_token_and_no_session(project):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = post(strict, {"events": [event()]}, project.write_key)
    assert response.status_code == 200
    assert "sessionid" not in response.cookies


def test_a_buffer_that_cannot_store_is_503_with_retry_after_and_nothing_acknowledged(
    client, project, settings
):
    # The spool's place is taken by a file: creating a segment fails for real.
    settings.OPENTRACE_TRACKING_DIR.mkdir(parents=True)
    (settings.OPENTRACE_TRACKING_DIR / "spool").write_text("not a directory")
    response = post(client, {"events": [event()]}, project.write_key)
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "retry" in response.json()["error"]
