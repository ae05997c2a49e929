"""When installing a release is refused (SPEC §4.2, §7, §12).

`updates.actions.request_install` applies these rules to every caller (the install view, a
command, a benchmark, a scheduled install); the System updates page shows the same answer
before anyone clicks. Each refusal is a sentence the page renders as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from contract.offer import reachable_from
from contract.registry import Release, parse_version
from updates.models import AgentHeartbeat, RegistryState, RunStatus, UpdateRun

# Refusals that a scheduled install waits out until the next window instead of giving up.
POSTPONABLE = ("offline", "stale")


@dataclass(frozen=True)
class PreviousFailure:
    """The last time a release failed or rolled back on this install (with no success since)."""

    run: UpdateRun

    @property
    def version(self) -> str:
        return self.run.to_version

    @property
    def outcome(self) -> str:
        return self.run.outcome

    @property
    def text(self) -> str:
        return self.sentence()

    def sentence(self) -> str:
        """ "1.1.7 rolled back here on 2026-11-30 02:14 UTC at migrate: <cause>" """
        run = self.run
        verb = "rolled back" if run.status == RunStatus.ROLLED_BACK else "failed"
        when = run.finished_at or run.requested_at
        at = f" at {run.failed_step}" if run.failed_step else ""
        cause = (run.rollback_cause or run.error or "").strip().splitlines()
        why = f": {cause[0][:200]}" if cause else ""
        return f"{run.to_version} {verb} here on {when:%Y-%m-%d %H:%M} UTC{at}{why}"


def previous_failure(version: str | None) -> PreviousFailure | None:
    """The last failure of `version` here, unless it has been installed successfully since."""
    wanted = parse_version(version)
    if wanted is None:
        return None
    failures = UpdateRun.objects.filter(status__in=[RunStatus.FAILED, RunStatus.ROLLED_BACK]).order_by(
        "-requested_at"
    )
    run = next((r for r in failures.defer("manifest") if parse_version(r.to_version) == wanted), None)
    if run is None:
        return None
    succeeded_since = UpdateRun.objects.filter(
        to_version=run.to_version, status=RunStatus.SUCCEEDED, requested_at__gt=run.requested_at
    ).exists()
    return None if succeeded_since else PreviousFailure(run)


def active_run_refusal() -> str | None:
    """Why a new run cannot start while another one is requested or running, or None."""
    active = UpdateRun.active()
    if active is None:
        return None
    return f"Another update ({active}) is already requested or running."


def agent_refusal(now: datetime) -> str | None:
    if not AgentHeartbeat.status(now).online:
        return (
            "The update agent on the host is offline (no heartbeat in the last "
            f"{settings.OPENTRACE_AGENT_OFFLINE_AFTER} s); start it with updater.sh or its systemd service."
        )
    return None


def stale_refusal(state: RegistryState, now: datetime) -> str | None:
    if state.expires_at is not None and state.expires_at <= now:
        return "The update information has expired (stale); run a successful check first."
    return None


@dataclass(frozen=True)
class Refusal:
    """A refusal's sentence and what kind it is ("offline", "stale", "again", "offer", "active")."""

    message: str
    kind: str

    @property
    def postponable(self) -> bool:
        return self.kind in POSTPONABLE


def offered_target(state: RegistryState, target: str) -> Release | None:
    """`target` when it is offered here: the latest, or a hop on the path to it."""
    offer = state.offer()
    wanted = parse_version(target)
    candidates = [*offer.path, *([offer.latest] if offer.latest else [])]
    return next((r for r in candidates if r.parsed_version == wanted), None)


def refusal_for(
    state: RegistryState,
    *,
    version: str | None = None,
    digest: str | None = None,
    target: str | None = None,
    again: bool = False,
    now: datetime | None = None,
) -> Refusal | None:
    """Why installing is refused right now, or None.

    Without `target`: the offered (latest) release; `version` and `digest` are the release
    and the registry document's SHA-256 that the admin confirmed, and an offer that changed
    since is refused. With `target`: exactly that release, which must still be offered here
    (not withdrawn, within this install's rollout) and within reach of the running version
    (a hop of an upgrade path). A release that failed or rolled back here needs `again`.
    """
    now = now or timezone.now()
    offer = state.offer()
    if target is not None:
        release = offered_target(state, target)
        if release is None:
            return Refusal(f"{target} is no longer offered to this install (withdrawn or replaced).", "offer")
        if not reachable_from(release, settings.OPENTRACE_VERSION):
            return Refusal(
                f"{release.version} can only be installed from {release.min_upgrade_from} or later.", "offer"
            )
    else:
        latest = offer.latest
        if latest is None:
            return Refusal("No newer release is offered.", "offer")
        if version is not None and (version != latest.version or digest != state.document_sha256):
            return Refusal("The offered release changed since this page was shown; review it again.", "offer")
        if not offer.installable:
            step = f" Install {offer.intermediate.version} first." if offer.intermediate else ""
            return Refusal(
                f"{latest.version} can only be installed from {latest.min_upgrade_from} or later.{step}",
                "offer",
            )
        release = latest
    stale = stale_refusal(state, now)
    if stale:
        return Refusal(stale, "stale")
    offline = agent_refusal(now)
    if offline:
        return Refusal(offline, "offline")
    active = active_run_refusal()
    if active:
        return Refusal(active, "active")
    failure = previous_failure(release.version)
    if failure is not None and not again:
        return Refusal(
            f"{failure.sentence()}. Installing it again needs an explicit second confirmation.", "again"
        )
    return None


def install_refusal(
    state: RegistryState,
    *,
    version: str | None = None,
    digest: str | None = None,
    now: datetime | None = None,
    again: bool = True,
) -> str | None:
    """The sentence of `refusal_for()` for the offered release (the page asks before anyone
    confirmed anything, so a previous failure is not a refusal here: the page flags it)."""
    refusal = refusal_for(state, version=version, digest=digest, again=again, now=now)
    return refusal.message if refusal else None
