"""The run state machine (SPEC §7): model methods own every status change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from testing.factories import make_run
from updates import signals, trigger
from updates.models import EventIn, RunAlreadyActive, TransitionRefused, UpdateRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def status_changes():
    received = []

    def receiver(sender, **kwargs):
        received.append((kwargs["old_status"], kwargs["new_status"]))

    signals.run_status_changed.connect(receiver, weak=False)
    yield received
    signals.run_status_changed.disconnect(receiver)


def test_a_requested_run_is_announced_after_commit(django_capture_on_commit_callbacks, status_changes):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        make_run()
    assert status_changes == []
    for callback in callbacks:
        callback()
    assert status_changes == [("", "requested")]
    # The model only writes rows: the trigger file is updates.actions' (see test_actions.py).
    assert not trigger.updates_dir().exists()


def test_the_database_allows_one_active_run_only():
    make_run()
    with pytest.raises(IntegrityError), transaction.atomic():
        UpdateRun.objects.create(
            from_version="1.1.5",
            to_version="1.2.0",
            git_tag="v1.2.0",
            manifest=b"",
            idempotency_key="x",
            status="running",
        )


def test_a_second_request_while_one_is_active_is_refused():
    make_run()
    with pytest.raises(RunAlreadyActive):
        make_run()
    assert UpdateRun.objects.count() == 1


def test_the_same_idempotency_key_returns_the_same_run():
    run = make_run(idempotency_key="k" * 32)
    again, created = UpdateRun.request(
        user=None,
        from_version="1.1.5",
        to_version="1.2.0",
        git_tag="v1.2.0",
        git_commit=None,
        severity="normal",
        manifest=b"",
        manifest_verified=False,
        idempotency_key="k" * 32,
    )
    assert (again.pk, created) == (run.pk, False)


def test_finished_runs_do_not_block_a_new_one():
    run = make_run()
    run.mark_running()
    run.mark_finished("succeeded")
    make_run()
    assert UpdateRun.objects.count() == 2


def test_the_happy_path(django_capture_on_commit_callbacks, status_changes):
    with django_capture_on_commit_callbacks(execute=True):
        run = make_run()
        run.mark_running()
        run.mark_finished("succeeded")
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.started_at is not None
    assert run.finished_at >= run.started_at
    assert status_changes == [("", "requested"), ("requested", "running"), ("running", "succeeded")]


@pytest.mark.parametrize("outcome", ["succeeded", "rolled_back"])
def test_a_requested_run_cannot_jump_to_an_outcome(outcome):
    run = make_run()
    with pytest.raises(TransitionRefused):
        run.mark_finished(outcome)
    run.refresh_from_db()
    assert run.status == "requested"


def test_a_requested_run_may_fail_when_the_agent_rejects_the_trigger():
    run = make_run()
    run.mark_finished("failed", error="bad signature")
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "bad signature")


@pytest.mark.parametrize("terminal", ["succeeded", "failed", "rolled_back"])
def test_terminal_states_never_change(terminal):
    run = make_run()
    run.mark_running()
    run.mark_finished(terminal)
    for attempt in (
        run.mark_running,
        lambda: run.mark_finished("succeeded"),
        run.cancel,
        lambda: run.mark_finished("failed"),
    ):
        with pytest.raises(TransitionRefused):
            attempt()
    assert run.expire() is False
    run.refresh_from_db()
    assert run.status == terminal


def test_a_refused_transition_announces_nothing(django_capture_on_commit_callbacks, status_changes):
    run = make_run()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(TransitionRefused):
        run.mark_finished("succeeded")
    assert status_changes == []


def test_events_carry_the_run_through_its_states():
    run = make_run()
    accepted, duplicates = run.record_events(
        [
            EventIn(1, "run", state="running"),
            EventIn(2, "step", step="preflight", state="started"),
            EventIn(3, "log", step="preflight", lines=["ok"]),
            EventIn(4, "step", step="preflight", state="succeeded"),
            EventIn(5, "step", step="deploy", state="failed", message="compose up failed"),
            EventIn(6, "run", state="rolled_back", message="deploy failed; restored 1.1.5"),
        ]
    )
    run.refresh_from_db()
    assert (accepted, duplicates) == (6, 0)
    assert run.status == "rolled_back"
    assert run.failed_step == "deploy"
    assert run.rollback_cause == "deploy failed; restored 1.1.5"
    assert run.log_lines() == ["ok"]


def test_a_failed_run_event_sets_the_error():
    run = make_run()
    run.record_events(
        [EventIn(1, "run", state="running"), EventIn(2, "run", state="failed", message="disk full")]
    )
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "disk full")


def test_a_forbidden_transition_in_a_batch_keeps_nothing_of_it():
    run = make_run()
    with pytest.raises(TransitionRefused) as refused:
        run.record_events(
            [
                EventIn(1, "log", lines=["x"]),
                EventIn(2, "run", state="succeeded"),
                EventIn(3, "run", state="running"),
            ]
        )
    # 1 moved it to running (progress means claimed), 2 succeeded it, 3 tries to restart a finished run
    assert refused.value.seq == 3
    run.refresh_from_db()
    assert run.status == "requested"
    assert run.events.count() == 0


def test_repeated_events_are_acknowledged_and_change_nothing():
    run = make_run()
    run.record_events([EventIn(1, "run", state="running"), EventIn(2, "log", lines=["a"])])
    assert run.record_events([EventIn(1, "run", state="running"), EventIn(2, "log", lines=["changed"])]) == (
        0,
        2,
    )
    assert run.log_lines() == ["a"]


def test_a_new_event_for_a_terminal_run_is_refused():
    run = make_run()
    run.record_events([EventIn(1, "run", state="running"), EventIn(2, "run", state="succeeded")])
    with pytest.raises(TransitionRefused):
        run.record_events([EventIn(3, "log", lines=["late"])])
    assert run.events.count() == 2


def test_the_step_timeline_has_durations():
    run = make_run()
    t0 = timezone.now()
    run.record_events(
        [
            EventIn(1, "step", step="backup", state="started", at=t0),
            EventIn(2, "step", step="backup", state="succeeded", at=t0 + timedelta(seconds=42)),
            EventIn(3, "step", step="fetch", state="started", at=t0 + timedelta(seconds=43)),
        ]
    )
    timeline = run.step_timeline()
    assert [(s["name"], s["state"]) for s in timeline] == [("backup", "succeeded"), ("fetch", "started")]
    assert timeline[0]["duration"] == timedelta(seconds=42)
    assert timeline[1]["duration"] is None


def test_cancel_and_expire_change_the_row_and_touch_no_file(superuser, settings):
    # Whatever sits at the trigger path is the caller's to withdraw first (updates.actions).
    trigger.write({"run_id": "00000000-0000-4000-8000-000000000000", "signature": "x"})
    before = trigger.trigger_path().read_bytes()
    cancelled = make_run()
    cancelled.cancel(by=superuser)
    expired = make_run()
    assert expired.expire() is True
    cancelled.refresh_from_db()
    expired.refresh_from_db()
    assert (cancelled.status, cancelled.error) == ("cancelled", "Cancelled by root_admin.")
    assert expired.status == "expired"
    assert f"{settings.OPENTRACE_TRIGGER_TIMEOUT} s" in expired.error
    assert trigger.trigger_path().read_bytes() == before


def test_only_a_requested_run_expires():
    run = make_run()
    run.mark_running()
    assert run.expire() is False
    run.refresh_from_db()
    assert run.status == "running"
