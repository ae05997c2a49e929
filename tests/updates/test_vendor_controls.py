"""The publisher's controls (SPEC §4.1): `withdrawn` and `rollout`, as this install sees them."""

from __future__ import annotations

import uuid

import pytest

from testing.factories import request_run
from testing.policies import publish
from updates import schedule, trigger
from updates.models import RegistryState, RunStatus, ScheduledInstall, UpdateRun

pytestmark = pytest.mark.django_db

SYSTEM = "/admin/updates/system/"


def test_a_withdrawn_release_s_unclaimed_request_is_cancelled_with_the_reason(
    registry_server, agent_online, django_capture_on_commit_callbacks
):
    publish(registry_server, {"version": "1.2.0"})
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run()
    assert trigger.read() is not None

    publish(registry_server, {"version": "1.2.0", "withdrawn": True}, meta_version=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule.run_once() is True

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.error == "Cancelled: the publisher withdrew 1.2.0 before an agent claimed this update."
    assert trigger.read() is None


def test_a_claimed_run_of_a_withdrawn_release_is_left_to_its_outcome(registry_server, agent_online):
    publish(registry_server, {"version": "1.2.0"})
    run = request_run()
    run.mark_running()
    publish(registry_server, {"version": "1.2.0", "withdrawn": True}, meta_version=2)

    schedule.run_once()

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_scheduled_install_of_a_withdrawn_release_is_cancelled(registry_server, agent_online, operator):
    state = publish(registry_server, {"version": "1.2.0"})
    scheduled = schedule.schedule_install(user=operator, version="1.2.0", digest=state.document_sha256)

    publish(registry_server, {"version": "1.2.0", "withdrawn": True}, meta_version=2)
    schedule.run_once()

    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.message) == ("cancelled", "Cancelled: the publisher withdrew 1.2.0.")
    assert not UpdateRun.objects.exists()


def test_a_withdrawn_release_is_not_offered(client, operator, registry_server):
    state = publish(registry_server, {"version": "1.2.0", "withdrawn": True})
    assert state.offer().latest is None
    client.force_login(operator)
    assert "Install update 1.2.0" not in client.get(SYSTEM).content.decode()


def test_running_a_withdrawn_release_shows_a_warning_with_what_to_do(
    client, operator, registry_server, settings
):
    publish(registry_server, {"version": "1.1.5", "withdrawn": True}, {"version": "1.1.6"})
    client.force_login(operator)

    page = client.get(SYSTEM).content.decode()

    assert "1.1.5, which this install runs, was withdrawn by its publisher." in page
    assert "Install 1.1.6 (below) as soon as you can" in page


def test_the_rollout_bucket_survives_restarts():
    assert RegistryState.objects.filter(install_id__isnull=False).count() == 0
    first = RegistryState.load()  # generates the install id, once
    bucket, install_id = first.rollout_bucket, first.install_id
    # A restart: nothing cached in this process, the row read again.
    again = RegistryState.objects.get(pk=first.pk)
    assert (again.install_id, again.rollout_bucket) == (install_id, bucket)
    assert RegistryState.load().install_id == install_id
    assert isinstance(install_id, uuid.UUID)


def rollout_document(percentage: int):
    return ({"version": "1.2.0"}, {"version": "1.3.0", "rollout": percentage})


def test_a_release_staged_to_other_installs_is_named_but_not_offered(client, operator, registry_server):
    state = RegistryState.load()
    while state.rollout_bucket < 50:  # an install outside the first half
        RegistryState.objects.filter(pk=state.pk).update(install_id=uuid.uuid4())
        state = RegistryState.load()
    state = publish(registry_server, *rollout_document(50))
    assert state.offer().latest.version == "1.2.0"
    client.force_login(operator)

    page = client.get(SYSTEM).content.decode()

    assert "1.3.0 exists but is not offered to this install yet" in page
    assert "rolling it out to 50 % of installs first" in page


def test_a_release_staged_to_this_install_is_offered(registry_server):
    state = RegistryState.load()
    while state.rollout_bucket >= 50:
        RegistryState.objects.filter(pk=state.pk).update(install_id=uuid.uuid4())
        state = RegistryState.load()
    assert publish(registry_server, *rollout_document(50)).offer().latest.version == "1.3.0"
    assert not ScheduledInstall.objects.exists()
