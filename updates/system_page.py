"""What the System updates page and its confirmation page show, gathered for the views.

The views parse the request and render; the questions the page answers ("which run is
shown?", "did this release fail here before?", "why can't I install?") are answered here,
from the models and `updates.rules`, so the page and its live script agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from updates import policy_context, rules, serializers
from updates.formatting import describe_check_error
from updates.models import AgentHeartbeat, RegistryCheck, RegistryState, UpdateRun
from updates.rules import PreviousFailure, install_refusal

RECENT_OUTCOME = timedelta(hours=24)  # a finished run stays on the page this long
RECENT_CHECKS = 5  # checks listed on the page; the registry keeps CHECK_HISTORY of them


def registry_context(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    state = RegistryState.load()
    offer = state.offer()
    last_check = state.last_check
    return {
        "running_version": settings.OPENTRACE_VERSION,
        "channel": settings.OPENTRACE_CHANNEL,
        "registry_url": settings.OPENTRACE_REGISTRY_URL,
        "state": state,
        "offer": offer,
        "staleness": state.staleness(now),
        "keys_configured": bool(settings.OPENTRACE_REGISTRY_KEYS),
        "last_check": last_check,
        "last_check_summary": describe_check_error(last_check.error) if last_check else "",
        "recent_checks": list(
            RegistryCheck.objects.defer("body").order_by("-started_at", "-id")[:RECENT_CHECKS]
        ),
        "skipped_versions": state.skipped_versions,
    }


def current_run() -> UpdateRun | None:
    """The active run, else the most recent one if it finished recently (to show its outcome)."""
    active = UpdateRun.active()
    if active is not None:
        return active
    latest = UpdateRun.objects.select_related("requested_by").order_by("-requested_at").first()
    if latest and latest.finished_at and timezone.now() - latest.finished_at < RECENT_OUTCOME:
        return latest
    return None


def previous_failure(version: str | None) -> PreviousFailure | None:
    return rules.previous_failure(version)


def page_refusal(state: RegistryState, run: UpdateRun | None) -> str | None:
    """Why Install is refused now, worded for a page that shows `run` below it."""
    offer = state.offer()
    if offer.latest is not None and not offer.installable and len(offer.path) > 1:
        # Out of reach, but a path leads there: the first hop is what Install starts.
        found = rules.refusal_for(state, target=offer.path[0].version, again=True)
        refusal = found.message if found else None
    else:
        refusal = install_refusal(state)
    active = UpdateRun.active()
    if refusal and active is not None and run is not None and active.pk == run.pk:
        # The rule's sentence names "another update"; here it is the one the page shows.
        return f"The update to {run.to_version} is in progress below; wait for it to end."
    return refusal


def system_context(*, can_install: bool, can_see_runs: bool, can_check: bool) -> dict[str, Any]:
    registry = registry_context()
    # A run's progress and log are the history's: without its permission, no run section.
    run = current_run() if can_see_runs else None
    agent = AgentHeartbeat.status()
    offer = registry["offer"]
    return {
        **registry,
        "can_install": can_install,
        "can_check": can_check,
        "agent": agent,
        "agent_offline_after": settings.OPENTRACE_AGENT_OFFLINE_AFTER,
        "install_refusal": page_refusal(registry["state"], run),
        "previous_failure": previous_failure(offer.latest.version if offer.latest else None),
        "run": run,
        "run_progress": serializers.run_progress(run, agent=agent) if run else None,
        **policy_context.system_additions(registry["state"]),
    }
