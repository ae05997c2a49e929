"""Approve, then schedule (issue 20): an approved release waits for the next window, goes
through request_install's rules then, is postponed when the agent is offline, and can be
cancelled or moved by an admin. Beat's schedule is ticked by the test's clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.urls import reverse

from testing.beat import Beat
from testing.policies import heartbeat, publish, set_policy
from updates import trigger
from updates.models import RegistryState, ScheduledInstall, UpdateRun

pytestmark = pytest.mark.django_db

SYSTEM = "/admin/updates/system/"


# The tests' night: tomorrow, as the session started (the clock is moved there, so "now" inside
# a test is no guide). UTC: the DST cases are test_window's and test_automatic_installs'.
TOMORROW = datetime.now(UTC).date() + timedelta(days=1)


def next_day_at(hour: int) -> datetime:
    return datetime.combine(TOMORROW, time(hour, 0), UTC)


@pytest.fixture
def clock():
    with time_machine.travel(next_day_at(1), tick=False) as traveller:
        yield traveller


@pytest.fixture
def world(clock, registry_server, eager_tasks, operator):
    """Every day a 03:00 UTC window for an hour; 1.2.0 offered; it is 01:00 UTC."""
    set_policy("manual", start=time(3, 0), minutes=60, zone="UTC")
    publish(registry_server, {"version": "1.2.0", "severity": "normal", "notes": "Faster funnels"})
    heartbeat()
    return clock


def schedule_from_the_page(client, operator, captured, **extra: str):
    client.force_login(operator)
    state = RegistryState.load()
    form = {
        "version": "1.2.0",
        "document_sha256": state.document_sha256,
        "idempotency_key": uuid.uuid4().hex,
        "when": "window",
        **extra,
    }
    with captured(execute=True):
        return client.post(reverse("updates_install"), form, follow=True)


def test_the_confirmation_page_offers_now_or_the_next_window(client, operator, world):
    client.force_login(operator)
    page = client.get(reverse("updates_install_confirm")).content.decode()
    assert "Yes, install 1.2.0 now" in page
    day = next_day_at(3).strftime("%A %Y-%m-%d")
    assert f"Install in the next window ({day} 03:00 UTC)" in page


def test_an_approved_release_waits_for_the_window_then_goes_through_request_install(
    client, operator, world, django_capture_on_commit_callbacks
):
    response = schedule_from_the_page(client, operator, django_capture_on_commit_callbacks)
    page = response.content.decode()
    [scheduled] = ScheduledInstall.objects.all()
    assert (scheduled.status, scheduled.not_before, scheduled.in_window) == (
        "scheduled",
        next_day_at(3),
        True,
    )
    assert "1.2.0 will be installed on" in page
    assert 'id="scheduled-install"' in page
    assert not UpdateRun.objects.exists()

    beat = Beat(world, "apply-update-policy")
    beat.before_tick = lambda now: heartbeat()
    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(next_day_at(3) - timedelta(minutes=1), step=timedelta(minutes=10))
    assert not UpdateRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(next_day_at(3))

    run = UpdateRun.objects.get()
    assert (run.to_version, run.status, run.requested_by) == ("1.2.0", "requested", operator)
    assert trigger.read()["run_id"] == str(run.pk)
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.run_id) == ("installing", run.pk)


def test_with_the_agent_offline_it_is_postponed_to_the_next_window_and_the_admins_are_told(
    client, operator, world, django_capture_on_commit_callbacks
):
    from updates import signals

    schedule_from_the_page(client, operator, django_capture_on_commit_callbacks)
    told: list[dict] = []
    signals.install_scheduled.connect(lambda sender, **kw: told.append(kw), weak=False, dispatch_uid="t")
    try:
        beat = Beat(world, "apply-update-policy")  # no heartbeat: the agent went away at 01:00
        with django_capture_on_commit_callbacks(execute=True):
            beat.run_until(next_day_at(3) + timedelta(minutes=5))
    finally:
        signals.install_scheduled.disconnect(dispatch_uid="t")

    assert not UpdateRun.objects.exists()
    scheduled = ScheduledInstall.objects.get()
    assert (scheduled.status, scheduled.not_before) == ("scheduled", next_day_at(3) + timedelta(days=1))
    assert scheduled.message.startswith("Postponed to ")
    assert "The update agent on the host is offline" in scheduled.message
    assert [t["scheduled_for"] for t in told] == [next_day_at(3) + timedelta(days=1)]
    client.force_login(operator)
    assert "The update agent on the host is offline" in client.get(SYSTEM).content.decode()

    # The next night the agent is back: installed then.
    beat.before_tick = lambda now: heartbeat()
    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(next_day_at(3) + timedelta(days=1), step=timedelta(minutes=20))
    assert UpdateRun.objects.get().to_version == "1.2.0"


def test_stale_information_postpones_it_too(client, operator, world, django_capture_on_commit_callbacks):
    schedule_from_the_page(client, operator, django_capture_on_commit_callbacks)
    RegistryState.objects.update(expires_at=next_day_at(2))

    beat = Beat(world, "apply-update-policy")
    beat.before_tick = lambda now: heartbeat()
    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(next_day_at(3))

    scheduled = ScheduledInstall.objects.get()
    assert not UpdateRun.objects.exists()
    assert scheduled.not_before == next_day_at(3) + timedelta(days=1)
    assert "expired (stale)" in scheduled.message


def test_an_admin_cancels_a_scheduled_install(client, operator, world, django_capture_on_commit_callbacks):
    schedule_from_the_page(client, operator, django_capture_on_commit_callbacks)
    scheduled = ScheduledInstall.objects.get()

    page = client.post(reverse("updates_scheduled_cancel", args=[scheduled.pk]), follow=True).content.decode()

    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.message) == ("cancelled", "Cancelled by operator.")
    assert "The scheduled install of 1.2.0 was cancelled." in page
    beat = Beat(world, "apply-update-policy")
    beat.before_tick = lambda now: heartbeat()
    beat.run_until(next_day_at(3) + timedelta(minutes=2))
    assert not UpdateRun.objects.exists()


def test_an_admin_moves_it_to_a_later_window(client, operator, world, django_capture_on_commit_callbacks):
    schedule_from_the_page(client, operator, django_capture_on_commit_callbacks)
    scheduled = ScheduledInstall.objects.get()
    later = next_day_at(3) + timedelta(days=2)
    assert later.isoformat() in client.get(SYSTEM).content.decode()  # offered in the menu

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("updates_scheduled_reschedule", args=[scheduled.pk]), {"not_before": later.isoformat()}
        )

    scheduled.refresh_from_db()
    assert scheduled.not_before == later
    beat = Beat(world, "apply-update-policy")
    beat.before_tick = lambda now: heartbeat()
    beat.run_until(next_day_at(3) + timedelta(minutes=2))
    assert not UpdateRun.objects.exists()  # not in tomorrow's window any more


def test_staff_without_the_permission_cannot_cancel_or_reschedule(
    client, operator, staff_user, world, django_capture_on_commit_callbacks
):
    schedule_from_the_page(client, operator, django_capture_on_commit_callbacks)
    scheduled = ScheduledInstall.objects.get()
    client.force_login(staff_user)
    assert client.post(reverse("updates_scheduled_cancel", args=[scheduled.pk])).status_code == 403
    assert client.post(reverse("updates_scheduled_reschedule", args=[scheduled.pk])).status_code == 403
    scheduled.refresh_from_db()
    assert scheduled.status == "scheduled"
