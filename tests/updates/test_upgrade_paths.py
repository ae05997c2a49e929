"""Upgrade paths (issue 20): a release out of reach by min_upgrade_from is installed hop by
hop, each hop its own run, the next requested only once the previous one succeeded and the
new release is the one running; the first failure stops the path. (The same through the
real agent: tests/e2e/test_upgrade_path_e2e.py.)"""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from testing.policies import heartbeat, publish
from updates import schedule
from updates.models import RegistryState, RunStatus, ScheduledInstall, UpdateRun

pytestmark = pytest.mark.django_db

PATH = ({"version": "1.1.8"}, {"version": "1.2.0", "min_upgrade_from": "1.1.8"})


@pytest.fixture
def path_offered(registry_server, eager_tasks):
    state = publish(registry_server, *PATH)
    heartbeat()
    return state


def start_path(client, operator, captured) -> str:
    client.force_login(operator)
    form = {
        "version": "1.2.0",
        "document_sha256": RegistryState.load().document_sha256,
        "idempotency_key": uuid.uuid4().hex,
    }
    with captured(execute=True):
        return client.post(reverse("updates_install"), form, follow=True).content.decode()


def finish(run: UpdateRun, status: str, **fields: str) -> None:
    run.mark_running()
    run.mark_finished(status, **fields)


def test_the_pages_offer_the_path(client, operator, path_offered):
    client.force_login(operator)
    system = client.get("/admin/updates/system/").content.decode()
    assert "install <strong>1.1.8, then 1.2.0</strong>" in system
    assert 'value="Install update 1.2.0…"' in system  # the path is what Install starts
    confirm = client.get(reverse("updates_install_confirm")).content.decode()
    assert '<strong id="confirm-path-hops">1.1.8, then 1.2.0</strong>' in confirm
    assert "Yes, install 1.2.0 (in 2 steps) now" in confirm


def test_the_hops_run_one_after_the_other(
    client, operator, path_offered, settings, django_capture_on_commit_callbacks
):
    start_path(client, operator, django_capture_on_commit_callbacks)
    first = UpdateRun.objects.get()
    assert (first.from_version, first.to_version) == ("1.1.5", "1.1.8")
    scheduled = ScheduledInstall.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        finish(first, RunStatus.SUCCEEDED)
        schedule.run_once()  # still the old release in this process: it waits for the new one
    assert UpdateRun.objects.count() == 1

    settings.OPENTRACE_VERSION = "1.1.8"  # the new release serves (and runs the policy's task)
    with django_capture_on_commit_callbacks(execute=True):
        schedule.run_once()  # the hop is done, and the next one requested at once
    second = UpdateRun.objects.exclude(pk=first.pk).get()
    assert (second.from_version, second.to_version) == ("1.1.8", "1.2.0")
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.installed_hops, scheduled.hops) == (
        "installing",
        ["1.1.8"],
        ["1.2.0"],
    )

    finish(second, RunStatus.SUCCEEDED)
    settings.OPENTRACE_VERSION = "1.2.0"
    schedule.run_once()
    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.installed_hops) == ("done", ["1.1.8", "1.2.0"])
    assert scheduled.run_ids == [str(first.pk), str(second.pk)]


def test_a_failing_first_hop_stops_the_path(
    client, operator, path_offered, django_capture_on_commit_callbacks
):
    start_path(client, operator, django_capture_on_commit_callbacks)
    first = UpdateRun.objects.get()

    finish(first, RunStatus.ROLLED_BACK, failed_step="migrate", rollback_cause="broken")
    schedule.run_once()
    schedule.run_once()

    scheduled = ScheduledInstall.objects.get()
    assert scheduled.status == "stopped"
    assert (
        scheduled.message == "Stopped: the update to 1.1.8 rolled back at migrate. 1.2.0 was not installed."
    )
    assert UpdateRun.objects.count() == 1
    client.force_login(operator)
    assert "1.2.0 was not installed." in client.get("/admin/updates/system/").content.decode()
