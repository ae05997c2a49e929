"""Never twice by accident (issue 20): a release that failed or rolled back here is flagged
wherever it is offered, never installed automatically again, and needs a second confirmation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.urls import reverse

from testing.beat import Beat
from testing.factories import request_run
from testing.policies import heartbeat, publish, set_policy
from updates import actions
from updates.models import RegistryState, RunStatus, ScheduledInstall, UpdateRun

pytestmark = pytest.mark.django_db

SYSTEM = "/admin/updates/system/"
TOMORROW = datetime.now(UTC).date() + timedelta(days=1)


def at(hour: int) -> datetime:
    return datetime.combine(TOMORROW, time(hour, 0), UTC)


def roll_back(run: UpdateRun) -> UpdateRun:
    run.mark_running()
    run.mark_finished(
        RunStatus.ROLLED_BACK,
        failed_step="migrate",
        rollback_cause="column events.plan does not exist",
        error="migrate failed",
    )
    return run


@pytest.fixture
def rolled_back(registry_server, eager_tasks, django_capture_on_commit_callbacks):
    """1.2.0 (security) is offered, was installed here and rolled back at migrate."""
    publish(registry_server, {"version": "1.2.0", "severity": "security"})
    heartbeat()
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run()
    return roll_back(run)


def confirm_form(**extra: str) -> dict[str, str]:
    return {
        "version": "1.2.0",
        "document_sha256": RegistryState.load().document_sha256,
        "idempotency_key": uuid.uuid4().hex,
        **extra,
    }


def test_it_is_flagged_on_system_updates_and_the_confirmation_page(client, operator, rolled_back):
    client.force_login(operator)
    when = rolled_back.finished_at.strftime("%Y-%m-%d %H:%M")
    sentence = f"1.2.0 rolled back here on {when} UTC at migrate: column events.plan does not exist"

    system = client.get(SYSTEM).content.decode()
    confirm = client.get(reverse("updates_install_confirm")).content.decode()

    assert sentence in system
    assert 'id="latest-failed-here"' in system
    assert sentence in confirm
    assert 'name="again"' in confirm


def test_installing_it_by_hand_needs_the_second_confirmation(
    client, operator, rolled_back, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(reverse("updates_install"), confirm_form(), follow=True).content.decode()
    assert "Installing it again needs an explicit second confirmation." in refused
    assert UpdateRun.objects.count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("updates_install"), confirm_form(again="1"), follow=True)
    assert UpdateRun.objects.filter(status=RunStatus.REQUESTED, to_version="1.2.0").count() == 1


def test_request_install_refuses_it_without_again(rolled_back):
    with pytest.raises(actions.Refused) as refused:
        actions.request_install(user=None)
    assert refused.value.kind == "again"
    assert actions.request_install(user=None, again=True).status == RunStatus.REQUESTED


def test_scheduling_it_needs_the_second_confirmation_too(client, operator, rolled_back):
    client.force_login(operator)
    client.post(reverse("updates_install"), confirm_form(when="window"), follow=True)
    assert not ScheduledInstall.objects.exists()
    client.post(reverse("updates_install"), confirm_form(when="window", again="1"), follow=True)
    assert ScheduledInstall.objects.get().again is True


def test_it_is_never_installed_automatically_again(
    rolled_back, registry_server, django_capture_on_commit_callbacks
):
    set_policy("all", start=time(3, 0), minutes=60, zone="UTC")
    with time_machine.travel(at(2), tick=False) as clock:
        publish(registry_server, {"version": "1.2.0", "severity": "security"}, meta_version=2)
        beat = Beat(clock, "apply-update-policy")
        beat.before_tick = lambda now: heartbeat()
        with django_capture_on_commit_callbacks(execute=True):
            beat.run_until(at(3) + timedelta(minutes=30), step=timedelta(minutes=5))

    assert not ScheduledInstall.objects.exists()
    assert list(UpdateRun.objects.values_list("status", flat=True)) == [RunStatus.ROLLED_BACK]


def test_a_newer_release_is_installed_automatically_all_the_same(
    rolled_back, registry_server, django_capture_on_commit_callbacks
):
    set_policy("all", start=time(3, 0), minutes=60, zone="UTC")
    with time_machine.travel(at(2), tick=False) as clock:
        publish(
            registry_server,
            {"version": "1.2.0"},
            {"version": "1.2.1", "severity": "security"},
            meta_version=2,
        )
        beat = Beat(clock, "apply-update-policy")
        beat.before_tick = lambda now: heartbeat()
        with django_capture_on_commit_callbacks(execute=True):
            beat.run_until(at(3), step=timedelta(minutes=5))

    assert UpdateRun.objects.filter(status=RunStatus.REQUESTED).get().to_version == "1.2.1"


def test_a_success_since_clears_the_flag(client, operator, rolled_back, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = actions.request_install(user=None, again=True)
    run.mark_running()
    run.mark_finished(RunStatus.SUCCEEDED)
    client.force_login(operator)
    assert "rolled back here on" not in client.get(SYSTEM).content.decode()


def test_the_new_version_notice_flags_it_too(rolled_back):
    from updates import notices
    from updates.channels import messages

    notice = notices.update_available_notice("1.2.0")
    assert "Careful: 1.2.0 rolled back here on" in notice.text
    assert "1.2.0 rolled back here on" in messages.update_available("1.2.0").text
