"""The notice task's retries through a real broker and a real Celery worker (in a thread).

The eager tests cover the decisions; this one proves the retry is really published again
(with its countdown) and picked up by a worker, keeping its claim on the notice log row.
"""

from __future__ import annotations

import uuid

import pytest
from celery.contrib.testing.worker import start_worker

from opentrace.celery import app as celery_app
from smtpconfig.models import NoticeLog
from testing.helpers import poll
from testing.smtp import configure_smtp
from updates import tasks
from updates.models import RegistryState


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_retries_a_temporary_failure_through_the_broker(superuser, smtp_server, monkeypatch):
    # Backoff of 0.5 s for the first retry, 1 s for the second: still a real countdown (ETA).
    monkeypatch.setattr(tasks, "RETRY_BASE_SECONDS", 0.5)
    # The embedded worker would otherwise replace the root logger's handlers for later tests.
    monkeypatch.setitem(celery_app.conf, "worker_hijack_root_logger", False)
    server = smtp_server("none", data_replies=["451 4.3.0 Try again later"] * 2)
    configure_smtp(server)
    state = RegistryState.load()
    state.releases = [{"version": "1.2.0"}]  # what the check that found 1.2.0 stored
    state.save(update_fields=["releases"])
    # A queue of our own, so the worker runs nothing that other tests left in the broker.
    queue = f"smtp-test-{uuid.uuid4().hex[:8]}"

    with start_worker(celery_app, perform_ping_check=False, queues=[queue], shutdown_timeout=20):
        result = tasks.send_update_available_notice.apply_async(args=["1.2.0"], queue=queue)
        assert poll(lambda: NoticeLog.objects.filter(status="sent").exists(), 20, 0.1), list(
            NoticeLog.objects.values("status", "attempts", "error")
        )

    entry = NoticeLog.objects.get()
    assert (entry.status, entry.attempts, entry.task_id) == ("sent", 3, result.id)
    assert server.handler.attempts == 3
    assert server.received[0].rcpt_tos == [superuser.email]
