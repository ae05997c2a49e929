"""The beat task: checks only when this install's jittered slot is due; signals a new release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from updates import signals, tasks
from updates.models import RegistryCheck, RegistryState

pytestmark = pytest.mark.django_db


def test_the_task_names_are_the_ones_beat_calls(settings):
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks.check_for_updates_if_due.name in scheduled


def test_the_first_run_checks_then_waits_for_the_next_slot(registry_server):
    registry_server.serve_json("/version.json", {"version": "1.1.5"})
    assert tasks.check_for_updates_if_due() == "ok"
    assert tasks.check_for_updates_if_due() == "not due"
    assert RegistryCheck.objects.count() == 1
    state = RegistryState.load()
    assert state.next_check_at > datetime.now(UTC)


def test_the_per_install_offset_is_random_and_persisted(settings):
    offset = RegistryState.load().offset_seconds
    assert 0 <= offset <= settings.OPENTRACE_UPDATE_CHECK_INTERVAL
    assert RegistryState.load().offset_seconds == offset


def test_slots_are_interval_apart_and_shifted_by_the_offset(settings):
    settings.OPENTRACE_UPDATE_CHECK_INTERVAL = 3600
    state = RegistryState.load()
    state.offset_seconds = 600
    now = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
    assert state.next_slot(now) == datetime(2026, 11, 27, 12, 10, tzinfo=UTC)
    assert state.next_slot(datetime(2026, 11, 27, 12, 10, tzinfo=UTC)) == datetime(
        2026, 11, 27, 13, 10, tzinfo=UTC
    )


def test_two_workers_never_both_take_the_same_slot():
    assert RegistryState.claim_scheduled_check() is True
    assert RegistryState.claim_scheduled_check() is False


def test_a_due_slot_is_checked(registry_server):
    registry_server.serve_json("/version.json", {"version": "1.1.5"})
    state = RegistryState.load()
    RegistryState.objects.filter(pk=state.pk).update(next_check_at=datetime.now(UTC) - timedelta(seconds=1))
    assert tasks.check_for_updates_if_due() == "ok"


def test_a_new_release_sends_update_available_after_commit_on_every_check(
    registry_server, django_capture_on_commit_callbacks
):
    registry_server.serve_json("/version.json", {"version": "1.2.0", "changelog": "notes"})
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    signals.update_available.connect(receiver, weak=False)
    try:
        from updates.checking import run_check

        with django_capture_on_commit_callbacks(execute=True):
            first = run_check(RegistryCheck.Trigger.SCHEDULED)
        with django_capture_on_commit_callbacks(execute=True):
            run_check(RegistryCheck.Trigger.MANUAL)
    finally:
        signals.update_available.disconnect(receiver)
    assert len(received) == 2
    assert received[0] == {
        "version": "1.2.0",
        "severity": "normal",
        "notes": "notes",
        "check_id": first.pk,
        "signal": signals.update_available,
    }


def test_no_signal_when_up_to_date_or_skipped(registry_server, django_capture_on_commit_callbacks):
    from updates.checking import run_check

    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    signals.update_available.connect(receiver, weak=False)
    try:
        registry_server.serve_json("/version.json", {"version": "1.1.5"})
        with django_capture_on_commit_callbacks(execute=True):
            run_check(RegistryCheck.Trigger.SCHEDULED)
        RegistryState.load().skip("1.2.0")
        registry_server.serve_json("/version.json", {"version": "1.2.0"})
        with django_capture_on_commit_callbacks(execute=True):
            run_check(RegistryCheck.Trigger.SCHEDULED)
    finally:
        signals.update_available.disconnect(receiver)
    assert received == []


def test_both_beat_tasks_are_registered_with_the_celery_app(settings):
    from opentrace.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks
