"""When installing the offered release is refused (SPEC §4.2, §7, §12).

`updates.actions.request_install` applies these rules to every caller (the install view, a
command, a benchmark, a scheduled install); the System updates page shows the same answer
before anyone clicks. Each refusal is a sentence the page renders as is.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from updates.models import AgentHeartbeat, RegistryState, UpdateRun


def active_run_refusal() -> str | None:
    """Why a new run cannot start while another one is requested or running, or None."""
    active = UpdateRun.active()
    if active is None:
        return None
    return f"Another update ({active}) is already requested or running."


def install_refusal(
    state: RegistryState,
    *,
    version: str | None = None,
    digest: str | None = None,
    now: datetime | None = None,
) -> str | None:
    """Why installing the offered release is refused right now, or None.

    `version` and `digest` are the release and the registry document's SHA-256 that the
    admin confirmed; given, an offer that changed since is refused.
    """
    now = now or timezone.now()
    offer = state.offer()
    latest = offer.latest
    if latest is None:
        return "No newer release is offered."
    if version is not None and (version != latest.version or digest != state.document_sha256):
        return "The offered release changed since this page was shown; review it again."
    if not offer.installable:
        step = f" Install {offer.intermediate.version} first." if offer.intermediate else ""
        return f"{latest.version} can only be installed from {latest.min_upgrade_from} or later.{step}"
    if state.expires_at is not None and state.expires_at <= now:
        return "The update information has expired (stale); run a successful check first."
    if not AgentHeartbeat.status(now).online:
        return (
            "The update agent on the host is offline (no heartbeat in the last "
            f"{settings.OPENTRACE_AGENT_OFFLINE_AFTER} s); start it with updater.sh or its systemd service."
        )
    return active_run_refusal()
