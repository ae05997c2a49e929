"""Celery tasks that send update notices, with retries and exponential backoff.

They take plain values (a version, a run id), re-read what they need, and never raise
except to retry: a mail problem is recorded in the NoticeLog and logged, and can never
fail an update.
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

from celery import shared_task
from celery.exceptions import Retry

from smtpconfig import notices

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 3600


def backoff(retries: int) -> int:
    """Seconds before retry number `retries + 1`: 30, 60, 120, ... capped at an hour, plus up to
    20% jitter so many notices failing together do not hammer the server together."""
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**retries)
    return delay + random.randint(0, delay // 5)


def _deliver(task: Any, notice: notices.Notice) -> str:
    request = task.request
    # Called directly (not through Celery) there is no task id and nothing to retry with.
    task_id = request.id or f"direct-{uuid.uuid4()}"
    final = request.called_directly or request.retries >= task.max_retries
    delivery = notices.deliver(notice, task_id=task_id, final_attempt=final)
    if delivery.should_retry:
        raise task.retry(countdown=backoff(request.retries))
    if delivery.no_transport:
        return "no SMTP server configured"
    return f"sent {len(delivery.sent)}, skipped {len(delivery.skipped)}, failed {len(delivery.failed)}"


@shared_task(bind=True, name="smtpconfig.tasks.send_update_available_notice", max_retries=MAX_RETRIES)
def send_update_available_notice(self: Any, version: str, severity: str = "", notes: str = "") -> str:
    from updates import notifications

    try:
        return _deliver(self, notifications.update_available_notice(version, severity, notes))
    except Retry:
        raise
    except Exception:
        logger.exception("Notice 'version %s available' could not be sent", version)
        return "error"


@shared_task(bind=True, name="smtpconfig.tasks.send_run_notice", max_retries=MAX_RETRIES)
def send_run_notice(self: Any, run_id: str, new_status: str) -> str:
    from updates import notifications

    try:
        notice = notifications.run_notice(run_id, new_status)
        if notice is None:
            return "nothing to send"
        return _deliver(self, notice)
    except Retry:
        raise
    except Exception:
        logger.exception("Notice for update run %s (%s) could not be sent", run_id, new_status)
        return "error"
