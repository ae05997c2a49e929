"""Celery tasks of the update flow.

Beat calls the first three every minute; each decides cheaply whether there is work. The
notice tasks are enqueued by `updates.notices` after the change they announce has
committed; they take plain ids, re-read what they need, and never raise except to retry:
a mail or channel problem is recorded in the notice log and logged, and can never fail an
update. Each notification channel gets its own task (`send_channel_notice`), so one that
fails or hangs delays no other channel and no mail.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import Retry
from django.conf import settings
from django.utils import timezone

from smtpconfig.notices import Notice, deliver
from updates import actions, notices, schedule
from updates.channels import delivery, messages
from updates.channels.models import NotificationChannel
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState, RunStatus, UpdateRun

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 3600


@shared_task(name="updates.tasks.check_for_updates_if_due", ignore_result=True)
def check_for_updates_if_due() -> str:
    """Check the registry when this install's jittered slot has come (see RegistryState.next_slot)."""
    if not RegistryState.claim_scheduled_check():
        return "not due"
    check = run_check(RegistryCheck.Trigger.SCHEDULED)
    return check.outcome


@shared_task(name="updates.tasks.expire_unclaimed_runs", ignore_result=True)
def expire_unclaimed_runs() -> int:
    """Expire requested runs no agent claimed within OPENTRACE_TRIGGER_TIMEOUT."""
    horizon = timezone.now() - timedelta(seconds=settings.OPENTRACE_TRIGGER_TIMEOUT)
    expired = 0
    stale = UpdateRun.objects.filter(status=RunStatus.REQUESTED, requested_at__lt=horizon)
    for run_id in stale.values_list("pk", flat=True):
        try:
            if actions.expire_run(run_id):
                expired += 1
        except OSError:
            # The updates dir misbehaves (permissions, a full disk): the other runs still expire.
            logger.exception("could not withdraw the trigger of run %s; it expires on a later pass", run_id)
    return expired


@shared_task(name="updates.tasks.apply_update_policy", ignore_result=True)
def apply_update_policy() -> bool:
    """The update policy's pass (`updates.schedule.run_once`): withdrawn releases, scheduled
    installs whose time has come, the next hop of an upgrade path, automatic installs."""
    return schedule.run_once()


# --- notices --------------------------------------------------------------------------------
def backoff(retries: int) -> int:
    """Seconds before retry number `retries + 1`: 30, 60, 120, ... capped at an hour, plus up to
    20% jitter so many notices failing together do not hammer the server together."""
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**retries)
    return delay + random.randint(0, delay // 5)


def _is_final(task: Any) -> bool:
    # Called directly (not through Celery) there is no task id and nothing to retry with.
    return bool(task.request.called_directly or task.request.retries >= task.max_retries)


def _send(task: Any, notice: Notice | None) -> str:
    if notice is None:
        return "nothing to send"
    request = task.request
    task_id = request.id or f"direct-{uuid.uuid4()}"
    mailed = deliver(notice, task_id=task_id, final_attempt=_is_final(task))
    if mailed.should_retry:
        raise task.retry(countdown=backoff(request.retries))
    if mailed.no_transport:
        return "no SMTP server configured"
    return f"sent {len(mailed.sent)}, skipped {len(mailed.skipped)}, failed {len(mailed.failed)}"


def _update_available(task: Any, version: str) -> str:
    try:
        return _send(task, notices.update_available_notice(version))
    except Retry:
        raise
    except Exception:
        logger.exception("Notice 'version %s available' could not be sent", version)
        return "error"


def _run_status(task: Any, run_id: str, new_status: str) -> str:
    try:
        return _send(task, notices.run_notice(run_id, new_status))
    except Retry:
        raise
    except Exception:
        logger.exception("Notice for update run %s (%s) could not be sent", run_id, new_status)
        return "error"


@shared_task(bind=True, name="updates.tasks.send_update_available_notice", max_retries=MAX_RETRIES)
def send_update_available_notice(self: Any, version: str) -> str:
    return _update_available(self, version)


@shared_task(bind=True, name="updates.tasks.send_install_scheduled_notice", max_retries=MAX_RETRIES)
def send_install_scheduled_notice(self: Any, version: str, scheduled_for: str) -> str:
    try:
        return _send(self, notices.install_scheduled_notice(version, scheduled_for))
    except Retry:
        raise
    except Exception:
        logger.exception("Notice 'install of %s scheduled for %s' could not be sent", version, scheduled_for)
        return "error"


@shared_task(bind=True, name="updates.tasks.send_run_notice", max_retries=MAX_RETRIES)
def send_run_notice(self: Any, run_id: str, new_status: str) -> str:
    return _run_status(self, run_id, new_status)


# --- notification channels ----------------------------------------------------------------
@shared_task(name="updates.tasks.announce_to_channels", ignore_result=True)
def announce_to_channels(source: str, args: list[str]) -> int:
    """Enqueue one `send_channel_notice` per enabled channel that gets this notice."""
    try:
        message = messages.build(source, args)
        if message is None:
            return 0
        channel_ids = NotificationChannel.getting(message.event)
    except Exception:
        logger.exception("Notice %s%r: could not find the channels that get it", source, args)
        return 0
    for channel_id in channel_ids:
        try:
            send_channel_notice.apply_async(
                args=(channel_id, source, list(args)), retry=True, retry_policy=notices.PUBLISH_RETRY_POLICY
            )
        except Exception:
            logger.exception("Could not enqueue notice %s%r for channel %s", source, args, channel_id)
    return len(channel_ids)


@shared_task(bind=True, name="updates.tasks.send_channel_notice", max_retries=MAX_RETRIES)
def send_channel_notice(self: Any, channel_id: int, source: str, args: list[str]) -> str:
    try:
        channel = NotificationChannel.objects.filter(pk=channel_id, enabled=True).first()
        if channel is None:
            logger.info(
                "Notification channel %s is gone or disabled; notice %s%r dropped", channel_id, source, args
            )
            return "no such enabled channel"
        message = messages.build(source, args)
        if message is None:
            return "nothing to send"
        if not channel.gets(message.event):
            return "the channel no longer gets it"
        task_id = self.request.id or f"direct-{uuid.uuid4()}"
        result = delivery.deliver(channel, message, task_id=task_id, final_attempt=_is_final(self))
        if result.outcome == delivery.RETRY:
            raise self.retry(countdown=backoff(self.request.retries))
        return result.outcome
    except Retry:
        raise
    except Exception:
        logger.exception("Notice %s%r for channel %s could not be sent", source, args, channel_id)
        return "error"


# The names these tasks had up to 1.1.x, when they lived in smtpconfig.tasks: a notice that
# was queued, or waiting to retry, while an install updated itself is still delivered (by
# the same task id, which alone may reclaim its notice log rows). Nothing enqueues them.
@shared_task(bind=True, name="smtpconfig.tasks.send_update_available_notice", max_retries=MAX_RETRIES)
def legacy_update_available_notice(self: Any, version: str, severity: str = "", notes: str = "") -> str:
    return _update_available(self, version)


@shared_task(bind=True, name="smtpconfig.tasks.send_run_notice", max_retries=MAX_RETRIES)
def legacy_run_notice(self: Any, run_id: str, new_status: str) -> str:
    return _run_status(self, run_id, new_status)
