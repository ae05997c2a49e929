"""Install update from the System updates page (SPEC §12): who may, when it is refused, what it leaves."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.test import Client
from django.urls import reverse

from testing.factories import make_run, request_run
from updates import trigger
from updates.models import AgentHeartbeat, EventIn, RegistryState, ScheduledInstall, UpdateRun

pytestmark = pytest.mark.django_db

PAGE = "/admin/updates/system/"


def install_form(state: RegistryState, **overrides: str) -> dict[str, str]:
    form = {
        "version": "1.2.0",
        "document_sha256": state.document_sha256,
        "idempotency_key": uuid.uuid4().hex,
    }
    form.update(overrides)
    return form


def post_install(client, state, django_capture_on_commit_callbacks, **overrides):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(reverse("updates_install"), install_form(state, **overrides), follow=True)


# --- the confirmation page -------------------------------------------------------------
def test_the_operator_sees_the_install_button_and_the_confirmation(client, operator, offered, agent_online):
    client.force_login(operator)
    page = client.get(PAGE).content.decode()
    assert "Install update 1.2.0" in page
    confirm = client.get(reverse("updates_install_confirm"), {"version": "1.2.0"})
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert 'id="confirm-from">1.1.5<' in text
    assert 'id="confirm-to">1.2.0<' in text
    assert "security" in text
    assert "unverified" in text
    assert "online (docker-host-1)" in text
    assert 'name="idempotency_key"' in text


def test_staff_without_permission_gets_no_button_and_403_on_confirmation(
    client, staff_user, offered, agent_online
):
    client.force_login(staff_user)
    assert b"Install update" not in client.get(PAGE).content
    assert client.get(reverse("updates_install_confirm")).status_code == 403


def test_anonymous_and_non_staff_are_sent_to_login(client, plain_user, offered):
    for user in (None, plain_user):
        if user:
            client.force_login(user)
        response = client.get(reverse("updates_install_confirm"))
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


def test_the_confirmation_says_when_the_offer_changed(client, operator, offered, agent_online):
    client.force_login(operator)
    response = client.get(reverse("updates_install_confirm"), {"version": "1.1.9"}, follow=True)
    assert b"changed since the page was shown" in response.content


# --- installing --------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["operator", "superuser"])
def test_installing_creates_a_run_a_trigger_and_an_admin_log_entry(
    request, client, who, offered, agent_online, django_capture_on_commit_callbacks
):
    user = request.getfixturevalue(who)
    client.force_login(user)
    response = post_install(client, offered, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    run = UpdateRun.objects.get()
    assert (run.status, run.from_version, run.to_version, run.git_commit) == (
        "requested",
        "1.1.5",
        "1.2.0",
        "b" * 40,
    )
    assert run.requested_by == user
    assert bytes(run.manifest) == bytes(offered.document)
    assert trigger.read()["run_id"] == str(run.pk)
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.action_flag, entry.object_id) == (user.pk, ADDITION, str(run.pk))
    assert "1.1.5 → 1.2.0" in entry.get_change_message()
    assert "requested" in response.content.decode()


def test_staff_without_permission_cannot_install(
    client, staff_user, offered, agent_online, django_capture_on_commit_callbacks
):
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("updates_install"), install_form(offered))
    assert response.status_code == 403
    assert UpdateRun.objects.count() == 0
    assert not trigger.trigger_path().exists()


def test_anonymous_cannot_install(client, offered, agent_online):
    response = client.post(reverse("updates_install"), install_form(offered))
    assert response.status_code == 302
    assert UpdateRun.objects.count() == 0


def test_install_needs_post(client, operator, offered, agent_online):
    client.force_login(operator)
    assert client.get(reverse("updates_install")).status_code == 405
    assert UpdateRun.objects.count() == 0


def test_install_needs_csrf(operator, offered, agent_online):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(reverse("updates_install"), install_form(offered)).status_code == 403
    assert UpdateRun.objects.count() == 0


def test_a_double_submit_makes_one_run(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    form = install_form(offered)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("updates_install"), form)
        second = client.post(reverse("updates_install"), form, follow=True)
    assert UpdateRun.objects.count() == 1
    assert b"was not started" not in second.content
    assert LogEntry.objects.count() == 1


def test_refused_when_the_agent_is_offline(client, operator, offered, django_capture_on_commit_callbacks):
    client.force_login(operator)
    response = post_install(client, offered, django_capture_on_commit_callbacks)
    assert b"agent on the host is offline" in response.content
    assert UpdateRun.objects.count() == 0


def test_refused_when_the_agent_went_silent(
    client, operator, offered, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    AgentHeartbeat.objects.create(
        agent_id="h", last_seen=timezone.now() - timedelta(seconds=settings.OPENTRACE_AGENT_OFFLINE_AFTER + 1)
    )
    client.force_login(operator)
    post_install(client, offered, django_capture_on_commit_callbacks)
    assert UpdateRun.objects.count() == 0


def test_refused_while_another_run_is_active(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    active = make_run()
    client.force_login(operator)
    response = post_install(client, offered, django_capture_on_commit_callbacks)
    assert b"already requested or running" in response.content
    assert list(UpdateRun.objects.values_list("pk", flat=True)) == [active.pk]


def test_refused_when_the_offered_release_changed_since_the_page(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    response = post_install(client, offered, django_capture_on_commit_callbacks, version="1.1.9")
    assert b"changed since this page was shown" in response.content
    response = post_install(client, offered, django_capture_on_commit_callbacks, document_sha256="0" * 64)
    assert b"changed since this page was shown" in response.content
    assert UpdateRun.objects.count() == 0


def test_a_release_out_of_reach_is_installed_along_its_upgrade_path(
    client, operator, registry_server, agent_online, django_capture_on_commit_callbacks
):
    """Issue 20: min_upgrade_from above the running version no longer refuses; the first hop runs."""
    from testing.registry_server import full_document
    from updates.checking import run_check
    from updates.models import RegistryCheck

    registry_server.serve_json(
        "/version.json",
        full_document({"version": "1.2.0"}, {"version": "2.0.0", "min_upgrade_from": "1.2.0"}),
    )
    run_check(RegistryCheck.Trigger.MANUAL)
    state = RegistryState.load()
    client.force_login(operator)
    page = client.get(PAGE).content.decode()
    assert "Install 1.2.0 first" in page
    assert "install <strong>1.2.0, then 2.0.0</strong>" in page
    response = post_install(client, state, django_capture_on_commit_callbacks, version="2.0.0")
    assert "The update to 1.2.0, then 2.0.0 was requested" in response.content.decode()
    [run] = UpdateRun.objects.all()
    assert (run.to_version, run.status) == ("1.2.0", "requested")
    [scheduled] = ScheduledInstall.objects.all()
    assert (scheduled.status, scheduled.hops, scheduled.run_id) == ("installing", ["1.2.0", "2.0.0"], run.pk)


def test_refused_with_a_garbage_idempotency_key(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    client.force_login(operator)
    response = post_install(client, offered, django_capture_on_commit_callbacks, idempotency_key="<script>")
    assert b"form was incomplete" in response.content
    assert UpdateRun.objects.count() == 0


# --- cancelling ---------------------------------------------------------------------------
def test_the_operator_can_cancel_an_unclaimed_run(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run()
    client.force_login(operator)
    assert b"Cancel this update" in client.get(PAGE).content
    response = client.post(reverse("updates_cancel", args=[run.pk]), follow=True)
    assert b"was cancelled" in response.content
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert not trigger.trigger_path().exists()
    assert LogEntry.objects.get().action_flag == CHANGE


def test_staff_without_permission_cannot_cancel(
    client, staff_user, offered, agent_online, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run()
    client.force_login(staff_user)
    assert client.post(reverse("updates_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == "requested"
    assert trigger.trigger_path().exists()


def test_anonymous_cannot_cancel(client):
    run = make_run()
    assert client.post(reverse("updates_cancel", args=[run.pk])).status_code == 302
    run.refresh_from_db()
    assert run.status == "requested"


def test_a_running_run_cannot_be_cancelled(client, superuser):
    run = make_run()
    run.mark_running()
    client.force_login(superuser)
    response = client.post(reverse("updates_cancel", args=[run.pk]), follow=True)
    assert b"could not be cancelled" in response.content
    run.refresh_from_db()
    assert run.status == "running"


def test_cancelling_an_unknown_run_is_404(client, superuser):
    client.force_login(superuser)
    assert client.post(reverse("updates_cancel", args=[uuid.uuid4()])).status_code == 404


# --- live progress -------------------------------------------------------------------------
def test_progress_reports_steps_state_and_log_tail(client, history_viewer):
    run = make_run()
    run.record_events(
        [
            EventIn(1, "run", state="running"),
            EventIn(2, "step", step="backup", state="started"),
            EventIn(3, "log", step="backup", lines=["<b>dumping</b>"]),
        ]
    )
    client.force_login(history_viewer)
    data = client.get(reverse("updates_progress")).json()
    assert data["run"]["id"] == str(run.pk)
    assert data["run"]["status"] == "running"
    assert data["run"]["terminal"] is False
    assert data["run"]["steps"][0]["name"] == "backup"
    assert data["run"]["log_tail"] == ["<b>dumping</b>"]
    assert data["run"]["url"] == reverse("admin:updates_updaterun_change", args=[run.pk])
    page = client.get(PAGE).content.decode()
    assert 'id="run-progress"' in page
    assert "&lt;b&gt;dumping&lt;/b&gt;" in page


def test_progress_has_exactly_the_keys_its_typed_shape_declares(client, operator, offered, agent_online):
    from updates.serializers import AgentProgress, Progress, RunProgress, StepProgress

    run = make_run()
    run.record_events([EventIn(1, "step", step="backup", state="started")])
    client.force_login(operator)
    data = client.get(reverse("updates_progress")).json()
    assert set(data) == set(Progress.__annotations__)
    assert set(data["agent"]) == set(AgentProgress.__annotations__)
    assert set(data["run"]) == set(RunProgress.__annotations__)
    assert set(data["run"]["steps"][0]) == set(StepProgress.__annotations__)


def test_progress_of_a_named_run_shows_its_outcome(client, history_viewer):
    run = make_run()
    run.record_events([EventIn(1, "run", state="running"), EventIn(2, "run", state="failed", message="boom")])
    client.force_login(history_viewer)
    data = client.get(reverse("updates_progress"), {"run": str(run.pk)}).json()
    assert (data["run"]["status"], data["run"]["terminal"], data["run"]["error"]) == ("failed", True, "boom")


def test_progress_without_a_run_is_null(client, history_viewer):
    client.force_login(history_viewer)
    assert client.get(reverse("updates_progress")).json()["run"] is None
    assert client.get(reverse("updates_progress"), {"run": "nope"}).status_code == 404


def test_progress_needs_staff(client, plain_user):
    assert client.get(reverse("updates_progress")).status_code == 302
    client.force_login(plain_user)
    assert client.get(reverse("updates_progress")).status_code == 302


def test_the_page_polls_and_keeps_retrying_through_a_restart(client, staff_user):
    make_run()
    client.force_login(staff_user)
    page = client.get(PAGE).content.decode()
    assert reverse("updates_progress") in page
    assert "Waiting for the server" in page
    assert "setTimeout(poll" in page
    assert "innerHTML" not in page  # the script only ever sets textContent


def test_refused_when_the_registry_document_has_expired(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    RegistryState.objects.filter(pk=offered.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    client.force_login(operator)
    response = post_install(client, offered, django_capture_on_commit_callbacks)
    assert b"has expired" in response.content
    assert UpdateRun.objects.count() == 0
