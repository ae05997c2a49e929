"""What the System updates page and the confirmation page show of the update policy (issue 20):
the scheduled install, the upgrade path, the vendor's controls, the estimate."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from contract.registry import Release
from updates import estimate, rules, schedule
from updates.models import RegistryState, ScheduledInstall, ScheduleStatus, UpdatePolicy
from updates.window import local_label

RECENT = timedelta(hours=24)  # a scheduled install that ended stays on the page this long
UPCOMING = 6  # window openings offered when rescheduling


def withdrawn_running(state: RegistryState) -> Release | None:
    """The registry's entry for the running version when its publisher withdrew it."""
    release = state.running_release()
    return release if release is not None and release.withdrawn else None


def openings(policy: UpdatePolicy, now: datetime) -> list[tuple[str, str]]:
    return [(o.isoformat(), local_label(o, policy.time_zone)) for o in policy.window.openings(now, UPCOMING)]


def system_additions(state: RegistryState, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    policy = UpdatePolicy.load()
    offer = state.offer()
    scheduled = ScheduledInstall.open()
    ended = None
    if scheduled is None:
        ended = (
            ScheduledInstall.objects.exclude(status__in=[ScheduleStatus.SCHEDULED, ScheduleStatus.INSTALLING])
            .filter(finished_at__gte=now - RECENT)
            .order_by("-finished_at")
            .first()
        )
    return {
        "policy": policy,
        "scheduled": scheduled,
        "scheduled_when": local_label(scheduled.not_before, policy.time_zone) if scheduled else "",
        "scheduled_ended": ended,
        "reschedule_openings": openings(policy, now) if scheduled else [],
        "withdrawn_running": withdrawn_running(state),
        "held_back": offer.held_back,
        "upgrade_path": offer.path if len(offer.path) > 1 else (),
        "path_failures": [f for f in (rules.previous_failure(r.version) for r in offer.path[:-1]) if f],
    }


def confirm_additions(state: RegistryState, release: Release, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    policy = UpdatePolicy.load()
    offer = state.offer()
    start = schedule.window_start_for(policy, now)
    hops = offer.path
    failures = [f for f in (rules.previous_failure(r.version) for r in hops) if f]
    cost = estimate.estimate(release)
    return {
        "policy": policy,
        "upgrade_path": hops if len(hops) > 1 else (),
        "next_window": local_label(start, policy.time_zone) if start else "",
        "window_open_now": policy.window.is_open(now),
        "hop_failures": failures,
        "needs_again": bool(failures),
        "estimate": cost,
        "estimate_needed": estimate.format_bytes(cost.needed_bytes),
        "estimate_backup": estimate.format_bytes(cost.backup_bytes),
        "estimate_build": estimate.format_bytes(cost.build_bytes),
        "estimate_free": estimate.format_bytes(cost.free_bytes),
        "scheduled": ScheduledInstall.open(),
        "running_version": settings.OPENTRACE_VERSION,
    }
