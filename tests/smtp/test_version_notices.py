""" "New version available": once per version per recipient, retried on temporary failures,
and never able to break the check that found the version."""

from __future__ import annotations

import time

import pytest
from celery import Celery

from smtpconfig.models import NoticeLog, SmtpSettings
from testing.smtp import SMTP_PASSWORD, SMTP_USER, configure_smtp
from updates import notices, tasks
from updates.models import RegistryState
from updates.signals import update_available

pytestmark = pytest.mark.django_db

NOTES = "Fixes <script>alert(1)</script> in the funnel view."


def offer(*releases: dict) -> None:
    """What a successful registry check leaves behind: the releases it stored."""
    state = RegistryState.load()
    state.releases = list(releases)
    state.save(update_fields=["releases"])


@pytest.fixture(autouse=True)
def offered_releases(db) -> None:
    offer({"version": "1.2.0", "severity": "security", "notes": NOTES}, {"version": "1.3.0"})


@pytest.fixture
def second_admin(django_user_model):
    return django_user_model.objects.create_superuser("second_admin", "second@example.com", "x-pass-1")


def announce(version: str = "1.2.0", check_id: int = 1) -> None:
    """What RegistryState.record_success sends once a check that found `version` commits."""
    update_available.send(sender=None, version=version, severity="security", notes=NOTES, check_id=check_id)


def test_it_is_sent_once_across_ten_checks_and_two_recipients(
    superuser, second_admin, smtp_server, eager_celery, django_capture_on_commit_callbacks, settings
):
    settings.OPENTRACE_INSTANCE_NAME = "Acme Analytics"
    server = smtp_server("none", users={SMTP_USER: SMTP_PASSWORD})
    configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)

    for check_id in range(10):
        with django_capture_on_commit_callbacks(execute=True):
            announce(check_id=check_id)

    assert sorted(r for got in server.received for r in got.rcpt_tos) == [
        "root@example.com",
        "second@example.com",
    ]
    got = server.received[0]
    assert got.message["Subject"] == "[Acme Analytics] OpenTrace 1.2.0 is available (security)"
    assert "1.2.0" in got.text
    assert settings.OPENTRACE_VERSION in got.text
    assert settings.OPENTRACE_BASE_URL in got.text
    assert "Fixes <script>alert(1)</script>" in got.text  # plain text is not escaped...
    assert "&lt;script&gt;" in got.html  # ...the HTML part is
    assert "Acme Analytics" in got.html
    assert SMTP_PASSWORD not in got.raw
    log = NoticeLog.objects.order_by("recipient")
    assert [(e.kind, e.key, e.recipient, e.status, e.attempts) for e in log] == [
        ("update_available", "1.2.0", "root@example.com", "sent", 1),
        ("update_available", "1.2.0", "second@example.com", "sent", 1),
    ]
    assert all(entry.sent_at is not None for entry in log)


def test_hostile_registry_values_cannot_inject_headers(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none")
    configure_smtp(server)
    # Stored as is (the parser would have refused this severity): the notice still holds.
    offer(
        {
            "version": "9.9.9",
            "severity": "critical\nX-Evil: 1",
            "notes": "<img src=x onerror=alert(1)>" * 1000,
        }
    )

    with django_capture_on_commit_callbacks(execute=True):
        announce("9.9.9\r\nBcc: victim@example.com" + "9" * 500)  # not a version: nothing to say
        announce("9.9.9")

    [got] = server.received
    assert got.rcpt_tos == [superuser.email]
    assert got.message["Bcc"] is None
    assert got.message["X-Evil"] is None
    assert "<img" not in got.html
    entry = NoticeLog.objects.get()
    assert (entry.status, len(entry.key) <= 64) == ("sent", True)


def test_a_newer_version_is_announced_again(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none")
    configure_smtp(server)

    with django_capture_on_commit_callbacks(execute=True):
        announce("1.2.0")
        announce("1.3.0")
        announce("1.2.0")

    assert [got.message["Subject"].split()[2] for got in server.received] == ["1.2.0", "1.3.0"]


def test_a_release_no_longer_offered_when_the_task_runs_is_not_announced(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks, settings
):
    server = smtp_server("none")
    configure_smtp(server)
    offer({"version": "1.3.0"})  # the registry withdrew 1.2.0 after the check that found it
    settings.OPENTRACE_VERSION = "1.3.0"  # ...and this install is on 1.3.0 by now

    with django_capture_on_commit_callbacks(execute=True):
        announce("1.2.0")
        announce("1.3.0")

    assert server.received == []
    assert NoticeLog.objects.count() == 0
    assert tasks.send_update_available_notice.apply(args=["1.2.0"]).result == "nothing to send"


def test_configured_recipients_replace_the_superusers(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none")
    configure_smtp(server, recipients="ops@example.com\nOPS@example.com; cto@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    assert sorted(r for got in server.received for r in got.rcpt_tos) == [
        "cto@example.com",
        "ops@example.com",
    ]


def test_inactive_superusers_and_those_without_email_get_nothing(
    django_user_model, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    django_user_model.objects.create_superuser("gone", "gone@example.com", "pw", is_active=False)
    django_user_model.objects.create_superuser("no_mail", "", "pw")
    django_user_model.objects.create_user("plain", "plain@example.com", "pw")
    server = smtp_server("none")
    configure_smtp(server)

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    assert server.received == []
    assert NoticeLog.objects.count() == 0


def test_without_an_smtp_server_nothing_is_sent_or_claimed(
    superuser, eager_celery, django_capture_on_commit_callbacks, settings
):
    settings.OPENTRACE_FALLBACK_EMAIL = None
    SmtpSettings.load()

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    assert NoticeLog.objects.count() == 0


def test_a_temporary_failure_is_retried_until_it_goes_through(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none", data_replies=["451 4.3.0 Try again later"] * 2)
    configure_smtp(server)

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    assert server.handler.attempts == 3
    assert len(server.received) == 1
    entry = NoticeLog.objects.get()
    assert (entry.status, entry.attempts) == ("sent", 3)


def test_a_notice_still_failing_after_the_last_retry_is_marked_failed(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(tasks.send_update_available_notice, "max_retries", 2)
    server = smtp_server("none", data_replies=["451 4.3.0 Try again later"] * 10)
    configure_smtp(server)

    result = tasks.send_update_available_notice.apply(args=["1.2.0"])

    assert result.successful()
    assert result.result == "sent 0, skipped 0, failed 1"
    entry = NoticeLog.objects.get()
    assert (entry.status, entry.attempts) == ("failed", 3)
    assert "451 4.3.0 Try again later" in entry.error
    assert server.handler.attempts == 3


def test_a_permanent_failure_is_not_retried(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none", data_replies=["550 5.1.1 No such user"] * 10)
    configure_smtp(server)

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    entry = NoticeLog.objects.get()
    assert (entry.status, entry.attempts) == ("failed", 1)
    assert "550 5.1.1 No such user" in entry.error


def test_a_server_that_is_down_never_breaks_the_check(
    superuser, closed_port, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(tasks.send_update_available_notice, "max_retries", 1)
    configure_smtp(port=closed_port, security="none")

    result = tasks.send_update_available_notice.apply(args=["1.2.0"])

    assert result.successful()
    entry = NoticeLog.objects.get()
    assert (entry.status, entry.attempts) == ("failed", 2)
    assert entry.error.startswith("refused:")


def test_an_unusable_password_is_recorded_against_the_notice(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none")
    row = configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)
    SmtpSettings.objects.filter(pk=row.pk).update(password_encrypted="gAAAAABbroken")

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    entry = NoticeLog.objects.get()
    assert entry.status == "failed"
    assert entry.error.startswith("secret:")


def test_another_tasks_pending_retry_is_not_sent_twice(
    superuser, smtp_server, eager_celery, django_capture_on_commit_callbacks
):
    server = smtp_server("none")
    configure_smtp(server)
    NoticeLog.objects.create(
        kind="update_available", key="1.2.0", recipient=superuser.email, status="retrying", task_id="first"
    )

    with django_capture_on_commit_callbacks(execute=True):
        announce()

    assert server.received == []
    assert NoticeLog.objects.get().status == "retrying"


def test_the_task_called_directly_sends_without_retrying(superuser, smtp_server):
    server = smtp_server("none", data_replies=["451 4.3.0 Try again later"])
    configure_smtp(server)

    result = tasks.send_update_available_notice("1.2.0")

    assert result == "sent 0, skipped 0, failed 1"
    assert NoticeLog.objects.get().status == "failed"


def test_backoff_doubles_with_jitter_and_is_capped():
    for retries, base in [(0, 30), (1, 60), (2, 120), (5, 960), (7, 3600), (20, 3600)]:
        delays = {tasks.backoff(retries) for _ in range(30)}
        assert all(base <= delay <= base * 1.2 for delay in delays), (retries, delays)


def test_the_receivers_are_connected_at_start_up():
    from updates.signals import run_status_changed

    try:
        # disconnect() says whether a receiver with that uid was connected.
        assert update_available.disconnect(dispatch_uid="notices.update_available")
        assert run_status_changed.disconnect(dispatch_uid="notices.run_status_changed")
    finally:
        notices.connect()


def test_an_unreachable_broker_is_logged_not_raised(
    closed_port, django_capture_on_commit_callbacks, caplog, monkeypatch
):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery lets it override any app's broker
    # Not made current: the shared tasks of every later test must stay on the project's app.
    unreachable = Celery("unreachable", broker=f"redis://127.0.0.1:{closed_port}/0", set_as_current=False)
    unreachable.conf.broker_connection_timeout = 1

    @unreachable.task(name="tests.unreachable_notice")
    def unreachable_notice(version: str) -> None:  # pragma: no cover - never delivered
        raise AssertionError("must not run")

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        notices._enqueue(unreachable_notice, "1.2.0")

    assert time.monotonic() - started < 10
    assert "the notice is lost" in caplog.text


def test_a_notice_queued_under_its_old_task_name_is_still_delivered(superuser, smtp_server, eager_celery):
    # Queued by 1.1.x (smtpconfig.tasks) just before this install updated itself.
    from opentrace.celery import app

    server = smtp_server("none")
    configure_smtp(server)

    result = app.tasks["smtpconfig.tasks.send_update_available_notice"].apply(args=["1.2.0", "security", ""])

    assert result.result == "sent 1, skipped 0, failed 0"
    assert server.received[0].message["Subject"].endswith("OpenTrace 1.2.0 is available (security)")
    assert "smtpconfig.tasks.send_run_notice" in app.tasks
