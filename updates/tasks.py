"""Celery tasks. Beat calls both every minute; each decides cheaply whether there is work."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from updates import actions
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState, RunStatus, UpdateRun

logger = logging.getLogger(__name__)


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
