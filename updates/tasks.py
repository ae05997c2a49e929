"""Celery tasks. Beat calls both every minute; each decides cheaply whether there is work."""

from __future__ import annotations

import logging

from celery import shared_task

from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState

logger = logging.getLogger(__name__)


@shared_task(name="updates.tasks.check_for_updates_if_due", ignore_result=True)
def check_for_updates_if_due() -> str:
    """Check the registry when this install's jittered slot has come (see RegistryState.next_slot)."""
    if not RegistryState.claim_scheduled_check():
        return "not due"
    check = run_check(RegistryCheck.Trigger.SCHEDULED)
    return check.outcome
