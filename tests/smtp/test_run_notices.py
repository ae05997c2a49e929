"""Notices for update runs: started, succeeded, failed or rolled back — driven by the run's own
state changes, so these tests go through UpdateRun's methods and the real signal."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from smtpconfig.models import NoticeLog
from testing.smtp import configure_smtp
from updates import tasks
from updates.models import EventIn, UpdateRun
from updates.signals import run_status_changed

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(superuser) -> UpdateRun:
    return UpdateRun.objects.create(
        from_version="1.1.5",
        to_version="1.2.0",
        git_tag="v1.2.0",
        requested_by=superuser,
        requested_by_username=superuser.username,
        manifest=b"{}",
        idempotency_key=uuid.uuid4().hex,
    )


@pytest.fixture
def server(smtp_server, superuser):
    server = smtp_server("none")
    configure_smtp(server)
    return server


def log_events(first_seq: int, count: int, per_event: int = 7) -> list[EventIn]:
    """`count` log lines numbered from 1, spread over events of `per_event` lines."""
    events, seq, n = [], first_seq, 1
    while n <= count:
        lines = [f"line {i:03d}" for i in range(n, min(n + per_event, count + 1))]
        events.append(EventIn(seq=seq, kind="log", step="build", lines=lines))
        seq, n = seq + 1, n + len(lines)
    return events


def subjects(server) -> list[str]:
    return [got.message["Subject"] for got in server.received]


def test_a_started_run_is_announced_with_a_link(
    run, server, eager_celery, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        run.mark_running()

    [got] = server.received
    assert got.message["Subject"] == f"[{settings.OPENTRACE_INSTANCE_NAME}] Update to 1.2.0 started"
    link = f"{settings.OPENTRACE_BASE_URL}/admin/updates/updaterun/{run.pk}/change/"
    assert link in got.text
    assert link in got.html
    assert "from 1.1.5 to 1.2.0" in got.text
    assert "root_admin" in got.text


def test_a_successful_run_is_announced_once(run, server, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run.mark_running(at=timezone.now() - timedelta(minutes=4, seconds=2))
    with django_capture_on_commit_callbacks(execute=True):
        run.mark_finished("succeeded")

    assert subjects(server)[1].endswith("Update to 1.2.0 succeeded")
    assert "Duration: 0:04:0" in server.received[1].text
    # A repeated status event (e.g. the signal delivered twice) sends nothing new.
    tasks.send_run_notice.apply(args=[str(run.pk), "succeeded"])
    assert len(server.received) == 2
    assert NoticeLog.objects.filter(kind="run_succeeded", key=f"{run.pk}:succeeded").count() == 1


def test_a_rolled_back_run_reports_the_step_the_error_and_the_last_50_log_lines(
    run, server, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run.record_events(
            [
                EventIn(seq=1, kind="run", state="running"),
                *log_events(first_seq=2, count=120),
                EventIn(seq=100, kind="step", step="migrate", state="failed", message="relation exists"),
            ]
        )
    with django_capture_on_commit_callbacks(execute=True):
        run.mark_finished(
            "rolled_back",
            error="migrate: relation <events> already exists",
            failed_step="migrate",
            rollback_cause="migrate failed after deploy",
        )

    got = server.received[-1]
    assert got.message["Subject"].endswith("Update to 1.2.0 failed and was rolled back")
    assert "Failing step: migrate" in got.text
    assert "migrate: relation <events> already exists" in got.text
    assert "relation &lt;events&gt; already exists" in got.html
    assert "the previous release (1.1.5) is serving again" in got.text
    tail = [line.strip() for line in got.text.splitlines() if line.strip().startswith("line ")]
    assert tail == [f"line {i:03d}" for i in range(71, 121)]
    assert "line 070" not in got.html
    assert "line 071" in got.html
    assert "line 120" in got.html
    assert f"/admin/updates/updaterun/{run.pk}/change/" in got.text


def test_a_failed_run_without_logs_still_says_what_failed(
    run, server, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run.mark_running()
        run.mark_finished("failed", error="backup: disk full", failed_step="backup")

    got = server.received[-1]
    assert got.message["Subject"].endswith("Update to 1.2.0 FAILED")
    assert "Failing step: backup" in got.text
    assert "(no log lines)" in got.text


@pytest.mark.parametrize("status", ["requested", "expired", "cancelled"])
def test_requested_expired_and_cancelled_runs_send_nothing(
    run, server, eager_celery, django_capture_on_commit_callbacks, status
):
    with django_capture_on_commit_callbacks(execute=True):
        run_status_changed.send(sender=UpdateRun, run_id=run.pk, old_status="requested", new_status=status)
    tasks.send_run_notice.apply(args=[str(run.pk), status])

    assert server.received == []
    assert NoticeLog.objects.count() == 0


def test_a_run_that_is_gone_is_ignored(server, eager_celery):
    result = tasks.send_run_notice.apply(args=[str(uuid.uuid4()), "failed"])

    assert result.successful()
    assert result.result == "nothing to send"
    assert server.received == []


@pytest.mark.parametrize("bad_id", ["", "not-a-uuid", "1; DROP TABLE updates_updaterun", "x" * 500])
def test_a_malformed_run_id_is_ignored(server, eager_celery, bad_id):
    result = tasks.send_run_notice.apply(args=[bad_id, "failed"])

    assert result.successful()
    assert result.result == "nothing to send"


def test_a_mail_failure_never_fails_the_run(
    run, closed_port, superuser, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(tasks.send_run_notice, "max_retries", 1)
    configure_smtp(port=closed_port, security="none")

    with django_capture_on_commit_callbacks(execute=True):
        run.mark_running()
        run.mark_finished("succeeded")

    run.refresh_from_db()
    assert run.status == "succeeded"
    assert set(NoticeLog.objects.values_list("status", flat=True)) == {"failed"}


def test_events_reported_by_the_agent_api_mail_the_operators(
    client, run, server, eager_celery, django_capture_on_commit_callbacks
):
    from testing.agent_client import event, post_events

    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(
            client,
            run.pk,
            event(1, "run", state="running"),
            event(2, "step", step="build", state="started"),
            event(3, "log", step="build", lines=["Step 1/9 : FROM python:3.11-slim", "npm ERR! code E404"]),
            event(4, "step", step="build", state="failed", message="docker build exited 1"),
            event(5, "run", state="failed", message="build: docker build exited 1"),
        )

    assert response.status_code == 200
    started, failed = server.received
    assert started.message["Subject"].endswith("Update to 1.2.0 started")
    assert failed.message["Subject"].endswith("Update to 1.2.0 FAILED")
    assert "Failing step: build" in failed.text
    assert "npm ERR! code E404" in failed.text
