"""updates.actions: the one owner of the install flow, whoever calls it (a view, a task, a script).

Every refusal rule is checked here through `request_install` itself, not only through the
page; the trigger file follows the transaction; cancel and expiry withdraw the trigger
before the run changes.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import transaction
from django.utils import timezone

from testing.factories import make_run, request_run
from updates import actions, tasks, trigger
from updates.models import AgentHeartbeat, RegistryState, UpdateRun

pytestmark = pytest.mark.django_db


def claim(run: UpdateRun) -> None:
    """What the agent does with a trigger it takes: its claim goes to its own state, the file is unlinked."""
    trigger.trigger_path().unlink()


# --- request_install: what it makes ----------------------------------------------------------
def test_it_makes_the_offered_run_and_logs_who_asked(operator, offered, agent_online):
    run = request_run(operator)
    assert (run.status, run.from_version, run.to_version, run.git_tag, run.git_commit) == (
        "requested",
        "1.1.5",
        "1.2.0",
        "v1.2.0",
        "b" * 40,
    )
    assert (run.severity, run.requested_by, run.requested_by_username) == ("security", operator, "operator")
    assert bytes(run.manifest) == bytes(offered.document)
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.action_flag, entry.object_id) == (operator.pk, ADDITION, str(run.pk))
    assert entry.get_change_message() == "Requested the update 1.1.5 → 1.2.0."


def test_the_trigger_is_written_only_once_the_transaction_commits(
    operator, offered, agent_online, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = request_run(operator)
    assert not trigger.trigger_path().exists()
    for callback in callbacks:
        callback()
    assert trigger.read()["run_id"] == str(run.pk)


def test_a_transaction_that_rolls_back_writes_no_trigger_and_leaves_no_run(
    operator, offered, agent_online, django_capture_on_commit_callbacks
):
    def request_then_fail() -> None:
        with transaction.atomic():
            request_run(operator)
            raise RuntimeError("the caller failed after the request")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        request_then_fail()
    assert not trigger.trigger_path().exists()
    assert UpdateRun.objects.count() == 0
    assert LogEntry.objects.count() == 0


def test_a_script_without_a_user_gets_a_run_named_system_and_no_log_entry(
    offered, agent_online, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run(None)
    assert (run.requested_by, run.requested_by_username) == (None, "system")
    assert trigger.read()["requested_by"] == "system"
    assert LogEntry.objects.count() == 0


def test_the_same_idempotency_key_returns_the_first_run_and_logs_once(operator, offered, agent_online):
    key = uuid.uuid4().hex
    first = actions.request_install(user=operator, idempotency_key=key)
    # The first run is active now: a new request would be refused, a repeated one is not.
    again = actions.request_install(user=operator, idempotency_key=key)
    assert again.pk == first.pk
    assert UpdateRun.objects.count() == 1
    assert LogEntry.objects.count() == 1


def test_a_trigger_that_cannot_be_written_fails_the_run_with_the_reason(
    operator, offered, agent_online, settings, tmp_path, django_capture_on_commit_callbacks
):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the updates dir should be")
    settings.OPENTRACE_UPDATES_DIR = blocked
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run(operator)
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error.startswith("Could not write the trigger file: ")


# --- request_install: each refusal -------------------------------------------------------------
def refused(**kwargs) -> str:
    with pytest.raises(actions.Refused) as refusal:
        actions.request_install(user=None, **kwargs)
    assert UpdateRun.objects.count() == 0
    assert not trigger.trigger_path().exists()
    return refusal.value.message


def test_refused_when_nothing_is_offered(agent_online):
    assert refused() == "No newer release is offered."


def test_refused_when_the_agent_never_sent_a_heartbeat(offered):
    assert refused().startswith("The update agent on the host is offline")


def test_refused_when_the_agent_went_silent(offered, settings):
    AgentHeartbeat.objects.create(
        agent_id="h", last_seen=timezone.now() - timedelta(seconds=settings.OPENTRACE_AGENT_OFFLINE_AFTER + 1)
    )
    assert refused().startswith("The update agent on the host is offline")


def test_refused_when_the_update_information_has_expired(offered, agent_online):
    RegistryState.objects.filter(pk=offered.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert refused() == "The update information has expired (stale); run a successful check first."


def test_refused_when_min_upgrade_from_is_not_met(registry_server, agent_online):
    from testing.registry_server import full_document
    from updates.checking import run_check
    from updates.models import RegistryCheck

    registry_server.serve_json(
        "/version.json",
        full_document({"version": "1.2.0"}, {"version": "2.0.0", "min_upgrade_from": "1.2.0"}),
    )
    assert run_check(RegistryCheck.Trigger.MANUAL).outcome == "ok"
    assert refused() == "2.0.0 can only be installed from 1.2.0 or later. Install 1.2.0 first."


@pytest.mark.parametrize("shown", [{"version": "1.1.9"}, {"document_sha256": "0" * 64}])
def test_refused_when_the_offer_changed_since_it_was_confirmed(offered, agent_online, shown):
    confirmed = {"version": "1.2.0", "document_sha256": offered.document_sha256, **shown}
    assert refused(**confirmed) == "The offered release changed since this page was shown; review it again."


def test_the_offer_the_admin_confirmed_is_installed(offered, agent_online):
    run = actions.request_install(user=None, version="1.2.0", document_sha256=offered.document_sha256)
    assert run.to_version == "1.2.0"


def test_refused_while_another_run_is_active(offered, agent_online):
    active = make_run()
    with pytest.raises(actions.Refused) as refusal:
        actions.request_install(user=None)
    assert refusal.value.message == f"Another update ({active}) is already requested or running."
    assert list(UpdateRun.objects.values_list("pk", flat=True)) == [active.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_that_slips_in_after_the_rules_is_refused_by_the_database(offered, agent_online):
    import threading

    from django.db import connection
    from django.db.models.signals import pre_save

    slipped_in: list[UpdateRun] = []
    asked: list[bool] = []

    def commit_another_run() -> None:
        try:
            slipped_in.append(make_run())
        finally:
            connection.close()

    def another_request_wins(sender, instance, **kwargs):
        # Another admin's request commits between this one's rule check and its INSERT.
        if not asked:
            asked.append(True)
            other = threading.Thread(target=commit_another_run)
            other.start()
            other.join(timeout=30)

    pre_save.connect(another_request_wins, sender=UpdateRun, weak=False)
    try:
        with pytest.raises(actions.Refused) as refusal:
            actions.request_install(user=None)
    finally:
        pre_save.disconnect(another_request_wins, sender=UpdateRun)
    [other] = slipped_in
    assert refusal.value.message == f"Another update ({other}) is already requested or running."
    assert list(UpdateRun.objects.values_list("pk", flat=True)) == [other.pk]


# --- cancel_run ----------------------------------------------------------------------------------
@pytest.fixture
def waiting(operator, offered, agent_online, django_capture_on_commit_callbacks) -> UpdateRun:
    """A requested run whose trigger file is on disk, no agent has claimed it."""
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run(operator)
    assert trigger.read()["run_id"] == str(run.pk)
    LogEntry.objects.all().delete()
    return run


def test_cancel_removes_the_trigger_then_cancels_and_logs(waiting, superuser):
    actions.cancel_run(waiting, by=superuser)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.error) == ("cancelled", "Cancelled by root_admin.")
    assert not trigger.trigger_path().exists()
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.action_flag, entry.object_id) == (superuser.pk, CHANGE, str(waiting.pk))


def test_a_claimed_run_cannot_be_cancelled(waiting, superuser):
    claim(waiting)
    with pytest.raises(actions.Refused, match="already claimed"):
        actions.cancel_run(waiting, by=superuser)
    waiting.refresh_from_db()
    assert waiting.status == "requested"
    assert not trigger.trigger_path().exists()
    assert LogEntry.objects.count() == 0


def test_a_running_run_cannot_be_cancelled(waiting, superuser):
    claim(waiting)
    waiting.mark_running()
    with pytest.raises(actions.Refused) as refusal:
        actions.cancel_run(waiting, by=superuser)
    assert refusal.value.message == "Only a requested run can be cancelled; this one is running."


def test_a_trigger_that_cannot_be_removed_cancels_nothing(waiting, superuser, monkeypatch):
    # The rename aside fails (here: a directory already sits at the name it would take).
    monkeypatch.setattr(trigger.secrets, "token_hex", lambda n: "fixed")
    (trigger.updates_dir() / f".withdrawn.{waiting.pk}.fixed").mkdir()
    (trigger.updates_dir() / f".withdrawn.{waiting.pk}.fixed" / "occupied").write_text("x")
    with pytest.raises(actions.Refused) as refusal:
        actions.cancel_run(waiting, by=superuser)
    assert refusal.value.message.startswith("The trigger file could not be removed (")
    waiting.refresh_from_db()
    assert waiting.status == "requested"
    assert trigger.read()["run_id"] == str(waiting.pk)
    assert LogEntry.objects.count() == 0


def test_a_script_may_cancel_without_a_user(waiting):
    actions.cancel_run(waiting, by=None)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.error) == ("cancelled", "Cancelled by an admin.")
    assert LogEntry.objects.count() == 0


# --- expire_run ------------------------------------------------------------------------------------
def test_expire_withdraws_the_trigger_and_expires(waiting, settings):
    assert actions.expire_run(waiting.pk) is True
    waiting.refresh_from_db()
    assert waiting.status == "expired"
    assert f"within {settings.OPENTRACE_TRIGGER_TIMEOUT} s" in waiting.error
    assert not trigger.trigger_path().exists()


def test_a_claimed_run_does_not_expire(waiting):
    claim(waiting)
    assert actions.expire_run(waiting.pk) is False
    waiting.refresh_from_db()
    assert waiting.status == "requested"
    assert not trigger.trigger_path().exists()


def test_expire_leaves_a_trigger_that_holds_another_run_alone():
    run = make_run()
    trigger.write({"run_id": "00000000-0000-4000-8000-000000000000", "signature": "x"})
    assert actions.expire_run(run.pk) is True
    assert trigger.read()["run_id"] == "00000000-0000-4000-8000-000000000000"


def test_a_run_that_moved_on_or_is_gone_does_not_expire():
    run = make_run()
    run.mark_running()
    assert actions.expire_run(run.pk) is False
    assert actions.expire_run(uuid.uuid4()) is False


# --- the Celery task, which goes through expire_run --------------------------------------------
def test_the_task_expires_unclaimed_runs_after_the_timeout(
    waiting, settings, django_capture_on_commit_callbacks
):
    settings.OPENTRACE_TRIGGER_TIMEOUT = 600
    assert tasks.expire_unclaimed_runs() == 0  # young: left alone
    UpdateRun.objects.filter(pk=waiting.pk).update(requested_at=timezone.now() - timedelta(seconds=601))
    assert tasks.expire_unclaimed_runs() == 1
    waiting.refresh_from_db()
    assert waiting.status == "expired"
    assert "600 s" in waiting.error
    assert not trigger.trigger_path().exists()


def test_the_task_skips_claimed_runs(waiting):
    UpdateRun.objects.filter(pk=waiting.pk).update(requested_at=timezone.now() - timedelta(days=1))
    claim(waiting)
    assert tasks.expire_unclaimed_runs() == 0
    waiting.refresh_from_db()
    assert waiting.status == "requested"
