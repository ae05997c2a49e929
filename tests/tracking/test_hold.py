"""The hold: while an update is requested or running, accepted events stay in the buffer,
so that a restore of ClickHouse during the update cannot discard them."""

from __future__ import annotations

import pytest

from testing.factories import make_run
from testing.tracking import count, event, post, stored
from tracking import store
from tracking.flusher import Flusher
from tracking.hold import check

pytestmark = pytest.mark.django_db


def restore_snapshot_taken_before_the_flush() -> None:
    """What restoring the run's backup does to rows written after its snapshot: they are gone."""
    stored("TRUNCATE TABLE opentrace.events")


def test_no_run_means_no_hold(db):
    assert check().held is False


@pytest.mark.parametrize("status", ["requested", "running"])
def test_an_active_run_holds_and_the_endpoint_keeps_accepting(client, project, engine, buffer, status):
    run = make_run()
    if status == "running":
        run.mark_running()
    response = post(client, {"events": [event(n) for n in range(10)]}, project.write_key)
    assert response.json() == {"accepted": 10}
    outcome = Flusher(buffer).run_once()
    assert outcome.state == "held"
    assert f"is {status}" in outcome.detail
    assert count(final=False) == 0
    assert buffer.read(100).events == 10


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "rolled_back"])
def test_the_held_events_are_written_once_the_run_ends(client, project, engine, buffer, outcome):
    run = make_run()
    run.mark_running()
    post(client, {"events": [event(n) for n in range(10)]}, project.write_key)
    assert Flusher(buffer).run_once().state == "held"
    run.mark_finished(outcome)
    assert Flusher(buffer).run_once().events == 10
    assert count(final=False) == 10


def test_a_cancelled_or_expired_request_releases_the_hold(client, project, engine, buffer):
    run = make_run()
    post(client, {"events": [event(1)]}, project.write_key)
    assert Flusher(buffer).run_once().state == "held"
    run.cancel()
    assert Flusher(buffer).run_once().state == "flushed"


def run_requested_during_insert(monkeypatch) -> list:
    """Make the next insert race a new update request: it lands while the run is requested."""
    runs = []
    real_insert = store.insert

    def insert_then_request(ch, rows):
        real_insert(ch, rows)
        if not runs:
            runs.append(make_run())

    monkeypatch.setattr(store, "insert", insert_then_request)
    return runs


def test_a_flush_that_a_run_overtook_is_kept_and_rewritten_after_the_restore(
    client, project, engine, buffer, monkeypatch
):
    runs = run_requested_during_insert(monkeypatch)
    post(client, {"events": [event(n) for n in range(20)]}, project.write_key)
    outcome = Flusher(buffer).run_once()
    assert outcome.state == "kept"
    assert count(final=False) == 20  # written, but perhaps after the run's snapshot
    assert buffer.read(100).events == 20  # so the buffer still has them
    (run,) = runs
    run.mark_running()
    assert Flusher(buffer).run_once().state == "held"
    restore_snapshot_taken_before_the_flush()
    run.mark_finished("rolled_back", rollback_cause="healthcheck failed")
    assert Flusher(buffer).run_once().events == 20
    assert count(final=False) == 20
    assert Flusher(buffer).run_once().state == "idle"


def test_a_kept_batch_is_not_written_twice_when_no_restore_happened(
    client, project, engine, buffer, monkeypatch
):
    runs = run_requested_during_insert(monkeypatch)
    post(client, {"events": [event(n) for n in range(20)]}, project.write_key)
    assert Flusher(buffer).run_once().state == "kept"
    runs[0].mark_running()
    runs[0].mark_finished("succeeded")
    post(client, {"events": [event(100 + n) for n in range(5)]}, project.write_key)
    outcome = Flusher(buffer).run_once()
    assert (outcome.state, outcome.events) == ("flushed", 5)  # the 20 were found already stored
    assert count(final=False) == 25
