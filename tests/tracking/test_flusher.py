"""The flusher writes what the endpoint accepted into ClickHouse, once per event, and forgets
it only then. Each test runs with the spool and, when Redis is configured, the Redis list."""

from __future__ import annotations

import uuid

import pytest

from testing.tracking import count, event, event_ids, post, stored
from tracking.flusher import Flusher

pytestmark = pytest.mark.django_db


def test_accepted_events_reach_clickhouse_with_their_fields(client, project, engine, buffer):
    given = str(uuid.uuid4())
    body = {"events": [event(1, event_id=given, timestamp="2026-11-30T10:00:00.250+01:00")]}
    # The TTL is relative to the event time: read the row before any merge could drop it.
    assert post(client, body, project.write_key).status_code == 200
    outcome = Flusher(buffer).run_once()
    assert (outcome.state, outcome.events) == ("flushed", 1)
    rows = stored(
        "SELECT project_id, toString(event_id), event, distinct_id, toString(timestamp), properties "
        "FROM opentrace.events"
    )
    assert rows == [
        (project.pk, given, "pageview", "user-1", "2026-11-30 09:00:00.250", '{"path":"/page/1","n":1}')
    ]
    assert Flusher(buffer).run_once().state == "idle"


def test_a_duplicate_event_id_within_one_request_is_stored_once(client, project, engine, buffer):
    same = str(uuid.uuid4())
    post(client, {"events": [event(1, event_id=same), event(1, event_id=same), event(2)]}, project.write_key)
    Flusher(buffer).run_once()
    assert count(final=False) == 2
    assert event_ids().count(same) == 1


def test_a_retried_request_in_the_same_batch_is_stored_once(client, project, engine, buffer):
    body = {"events": [event(n, event_id=str(uuid.uuid4())) for n in range(5)]}
    for _ in range(3):
        assert post(client, body, project.write_key).json() == {"accepted": 5}
    Flusher(buffer).run_once()
    assert count(final=False) == 5


def test_a_retry_after_the_first_copy_was_flushed_counts_once(client, project, engine, buffer):
    body = {"events": [event(n, event_id=str(uuid.uuid4())) for n in range(5)]}
    post(client, body, project.write_key)
    Flusher(buffer).run_once()
    post(client, body, project.write_key)  # the SDK never saw the first 200
    Flusher(buffer).run_once()
    assert count(final=True) == 5
    # Same sort key, same event_id: the copies are one row once ClickHouse merges them.
    stored("OPTIMIZE TABLE opentrace.events FINAL")
    assert count(final=False) == 5


def test_the_same_event_id_in_two_projects_is_two_events(client, project, engine, buffer):
    from tracking.models import Project

    other = Project.objects.create(name="Blog")
    same = str(uuid.uuid4())
    post(client, {"events": [event(1, event_id=same)]}, project.write_key)
    post(client, {"events": [event(1, event_id=same)]}, other.write_key)
    Flusher(buffer).run_once()
    assert sorted(r[0] for r in stored("SELECT project_id FROM opentrace.events")) == [project.pk, other.pk]


def test_large_backlogs_go_in_batches_until_the_buffer_is_empty(client, project, engine, buffer):
    for n in range(12):
        post(client, {"events": [event(n * 100 + i) for i in range(100)]}, project.write_key)
    flusher = Flusher(buffer, max_events=500)
    outcomes = []
    while (outcome := flusher.run_once()).state == "flushed":
        outcomes.append(outcome.events)
    assert outcome.state == "idle"
    assert outcomes == [500, 500, 200]
    assert count(final=False) == 1200


def test_a_missing_events_table_backs_off_and_keeps_the_batch(client, project, buffer, tmp_path, settings):
    from opentrace.config import ClickHouseTarget

    path = tmp_path / "unmigrated"
    settings.CLICKHOUSE = ClickHouseTarget(
        dsn=f"chdb://{path}", database="opentrace", embedded=True, path=path
    )
    post(client, {"events": [event(1)]}, project.write_key)
    outcome = Flusher(buffer).run_once()
    assert outcome.state == "backoff"
    assert "does not exist" in outcome.detail
    batch = buffer.read(100)
    assert batch is not None
    assert batch.events == 1
