"""A channel notice retried through a real broker by a real Celery worker (in a thread): the
retry is published again with its countdown and keeps its claim on the notice log row."""

from __future__ import annotations

import uuid

import pytest
from celery.contrib.testing.worker import start_worker

from opentrace.celery import app as celery_app
from smtpconfig.models import NoticeLog
from testing.channels import make_channel
from testing.helpers import poll
from testing.webhook_receiver import Reply
from updates import tasks
from updates.models import UpdateRun


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_retries_a_5xx_with_backoff_through_the_broker(receiver, superuser, monkeypatch):
    monkeypatch.setattr(tasks, "RETRY_BASE_SECONDS", 1)  # then 2 s: still a real countdown (ETA)
    monkeypatch.setitem(celery_app.conf, "worker_hijack_root_logger", False)
    hook = receiver(Reply(503), Reply(500))
    channel, _ = make_channel(hook.url())
    run = UpdateRun.objects.create(
        from_version="1.1.5",
        to_version="1.2.0",
        git_tag="v1.2.0",
        manifest=b"{}",
        idempotency_key=uuid.uuid4().hex,
    )
    run.mark_running()
    queue = f"channels-test-{uuid.uuid4().hex[:8]}"  # nothing other tests left in the broker

    with start_worker(celery_app, perform_ping_check=False, queues=[queue], shutdown_timeout=20):
        result = tasks.send_channel_notice.apply_async(
            args=[channel.pk, "run_status", [str(run.pk), "running"]], queue=queue
        )
        assert poll(lambda: NoticeLog.objects.filter(status="sent").exists(), 20, 0.1), list(
            NoticeLog.objects.values("status", "attempts", "error")
        )

    entry = NoticeLog.objects.get()
    assert (entry.status, entry.attempts, entry.task_id) == ("sent", 3, result.id)
    assert len(hook.received) == 3
    gaps = [b - a for a, b in zip(hook.arrivals, hook.arrivals[1:], strict=False)]
    assert gaps[0] >= 1.0  # the first retry waited its countdown
    assert gaps[1] >= 2.0  # and the second twice as long
