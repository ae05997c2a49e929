"""Scheduled installs and the update policy at work (SPEC §12 "Update policy").

An admin approves a release and chooses "install in the next window" (`schedule_install`),
or starts an upgrade path now (`install_path_now`); the policy schedules automatic installs
by itself. Celery beat calls `run_once()` every minute (`updates.tasks.apply_update_policy`);
each pass:

1. cancels unclaimed requests for a release its publisher has since withdrawn, and scheduled
   installs that would install one;
2. moves the open scheduled install on: when its time has come (inside the window), its next
   hop goes through `actions.request_install` with every refusal rule; an offline agent or
   stale information postpones it to the next window and tells the admins; a hop that
   succeeded makes room for the next one, a hop that failed stops the path;
3. schedules the offered release into the next window when the policy installs it by itself
   — never a release that failed or rolled back here, and never one twice.

Every step takes `now`, so tests drive the schedule with a clock of their own.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from contract.registry import parse_version
from updates import actions, rules, signals
from updates.models import (
    RegistryState,
    RunStatus,
    ScheduledInstall,
    ScheduleRefused,
    ScheduleStatus,
    UpdatePolicy,
    UpdateRun,
)
from updates.window import local_label

logger = logging.getLogger(__name__)

FAILED_RUN = (RunStatus.FAILED, RunStatus.ROLLED_BACK, RunStatus.EXPIRED, RunStatus.CANCELLED)


# --- reading -------------------------------------------------------------------------------
def window_start_for(policy: UpdatePolicy, now: datetime) -> datetime | None:
    """When an install "in the next window" starts: now when a window is open, else its next opening."""
    window = policy.window
    if window.is_open(now):
        return now
    return window.next_opening(now)


def path_versions(state: RegistryState) -> list[str]:
    """The hops to the offered release ("1.1.8", "1.2.0"); empty when nothing reaches it."""
    return [r.version for r in state.offer().path]


def when_label(instant: datetime, policy: UpdatePolicy | None = None) -> str:
    policy = policy or UpdatePolicy.load()
    return local_label(instant, policy.time_zone)


# --- admin actions ------------------------------------------------------------------------------
def _approved_path(version: str, digest: str, again: bool) -> list[str]:
    """The hops to the release the admin confirmed; raises actions.Refused when it changed."""
    state = RegistryState.load()
    latest = state.offer().latest
    if latest is None or version != latest.version or digest != state.document_sha256:
        raise actions.Refused("The offered release changed since this page was shown; review it again.")
    hops = path_versions(state)
    if not hops:
        raise actions.Refused(
            f"No chain of offered releases reaches {latest.version} from {settings.OPENTRACE_VERSION}; "
            "upgrade manually."
        )
    for hop in hops:
        failure = rules.previous_failure(hop)
        if failure is not None and not again:
            raise actions.Refused(
                f"{failure.sentence()}. Installing it again needs an explicit second confirmation.",
                kind="again",
            )
    return hops


def schedule_install(
    *,
    user: AbstractBaseUser | None,
    version: str,
    digest: str,
    again: bool = False,
    now: datetime | None = None,
) -> ScheduledInstall:
    """Approve the offered release for the next maintenance window. Raises actions.Refused."""
    now = now or timezone.now()
    hops = _approved_path(version, digest, again)
    policy = UpdatePolicy.load()
    start = window_start_for(policy, now)
    if start is None:
        raise actions.Refused("The update policy has no maintenance window (no day chosen); set one first.")
    try:
        scheduled = ScheduledInstall.create(
            target_version=version,
            hops=hops,
            not_before=start,
            in_window=True,
            automatic=False,
            again=again,
            user=user,
        )
    except ScheduleRefused as exc:
        raise actions.Refused(exc.message) from None
    _announce(scheduled, start)
    return scheduled


def install_path_now(
    *,
    user: AbstractBaseUser | None,
    version: str,
    digest: str,
    again: bool = False,
    now: datetime | None = None,
) -> ScheduledInstall:
    """Start an upgrade path of several hops now: the first hop is requested at once, each
    next one when the previous succeeded. Raises actions.Refused."""
    now = now or timezone.now()
    hops = _approved_path(version, digest, again)
    # Refused now, it is refused to the admin who clicked, not postponed behind their back.
    refusal = rules.refusal_for(RegistryState.load(), target=hops[0], again=again, now=now)
    if refusal is not None:
        raise actions.Refused(refusal.message, kind=refusal.kind)
    try:
        scheduled = ScheduledInstall.create(
            target_version=version,
            hops=hops,
            not_before=now,
            in_window=False,
            automatic=False,
            again=again,
            user=user,
        )
    except ScheduleRefused as exc:
        raise actions.Refused(exc.message) from None
    message = _request_hop(scheduled, now)
    if message is not None:
        scheduled.cancel(f"Not started: {message}", now)
        raise actions.Refused(message)
    return scheduled


def cancel_scheduled(
    scheduled: ScheduledInstall, *, by: AbstractBaseUser | None, now: datetime | None = None
) -> None:
    """Withdraw a scheduled install (and the hop run it requested, while no agent has claimed it)."""
    now = now or timezone.now()
    if not scheduled.is_open:
        raise actions.Refused(
            f"This install is {scheduled.get_status_display().lower()}; there is nothing to cancel."
        )
    run = scheduled.run if scheduled.status == ScheduleStatus.INSTALLING else None
    if run is not None:
        run.refresh_from_db()
        if run.status == RunStatus.REQUESTED:
            actions.cancel_run(run, by=by)
        elif run.status == RunStatus.RUNNING:
            raise actions.Refused(
                f"The update to {run.to_version} is running; it can no longer be cancelled."
            )
    who = getattr(by, "username", "") or "an admin"
    if not scheduled.cancel(f"Cancelled by {who}.", now):
        raise actions.Refused("This install moved on meanwhile; reload the page.")


def reschedule(scheduled: ScheduledInstall, not_before: datetime, *, now: datetime | None = None) -> None:
    """Move a scheduled install to another time (it still waits for a window to be open then)."""
    now = now or timezone.now()
    if scheduled.status != ScheduleStatus.SCHEDULED:
        raise actions.Refused("Only an install that has not started can be rescheduled.")
    if not_before < now:
        raise actions.Refused("Choose a time in the future.")
    if not scheduled.reschedule(not_before, message=f"Rescheduled to {when_label(not_before)}."):
        raise actions.Refused("This install moved on meanwhile; reload the page.")
    _announce(scheduled, not_before)


# --- the periodic pass ----------------------------------------------------------------------
def run_once(now: datetime | None = None) -> bool:
    """One pass of the policy (see the module's docstring). True when something changed."""
    now = now or timezone.now()
    changed = cancel_withdrawn(now)
    changed = advance(now) or changed
    return auto_schedule(now) or changed


def withdrawn_versions(state: RegistryState) -> set[str]:
    return {r.version for r in state.release_list() if r.withdrawn}


def _is_withdrawn(version: str, withdrawn: set[str]) -> bool:
    wanted = parse_version(version)
    return any(parse_version(v) == wanted for v in withdrawn)


def cancel_withdrawn(now: datetime) -> bool:
    """Cancel unclaimed requests and open scheduled installs for a release the publisher withdrew."""
    withdrawn = withdrawn_versions(RegistryState.load())
    if not withdrawn:
        return False
    changed = False
    for run in UpdateRun.objects.filter(status=RunStatus.REQUESTED).defer("manifest"):
        if not _is_withdrawn(run.to_version, withdrawn):
            continue
        reason = f"Cancelled: the publisher withdrew {run.to_version} before an agent claimed this update."
        try:
            actions.cancel_run(run, by=None, reason=reason)
            changed = True
        except actions.Refused as refused:
            logger.info("run %s for withdrawn %s not cancelled: %s", run.pk, run.to_version, refused.message)
    scheduled = ScheduledInstall.open()
    if scheduled is not None and any(_is_withdrawn(v, withdrawn) for v in scheduled.hops):
        names = ", ".join(v for v in scheduled.hops if _is_withdrawn(v, withdrawn))
        message = f"Cancelled: the publisher withdrew {names}."
        if scheduled.status == ScheduleStatus.INSTALLING and scheduled.run_id:
            run = UpdateRun.objects.defer("manifest").get(pk=scheduled.run_id)
            if run.status == RunStatus.RUNNING:
                return changed  # too late: the agent is installing it; its outcome decides
        changed = scheduled.cancel(message, now) or changed
    return changed


def advance(now: datetime) -> bool:
    """Move the open scheduled install on by one step, if it can move."""
    scheduled = ScheduledInstall.open()
    if scheduled is None:
        return False
    if scheduled.status == ScheduleStatus.INSTALLING:
        return _follow_run(scheduled, now)
    if scheduled.not_before > now:
        return False
    policy = UpdatePolicy.load()
    if scheduled.in_window and not policy.window.is_open(now):
        # Its time has passed while no window was open (the window closed, or the policy
        # changed): the next opening, then.
        return _postpone(scheduled, now, "the maintenance window was closed")
    _request_hop(scheduled, now)
    return True


def _follow_run(scheduled: ScheduledInstall, now: datetime) -> bool:
    run = (
        UpdateRun.objects.defer("manifest").filter(pk=scheduled.run_id).first() if scheduled.run_id else None
    )
    if run is None:
        return scheduled.stop("Stopped: the update run of this install is gone.", now)
    if run.status in (RunStatus.REQUESTED, RunStatus.RUNNING):
        return False
    if run.status == RunStatus.SUCCEEDED:
        if scheduled.hops[1:] and parse_version(settings.OPENTRACE_VERSION) != parse_version(run.to_version):
            return False  # this process is still the release before the hop; the new one goes on
        moved = scheduled.hop_succeeded(now)
        if moved and scheduled.status == ScheduleStatus.SCHEDULED:
            _request_hop(scheduled, now)  # the next hop at once, with the rules applied afresh
        return moved
    rest = scheduled.hops[1:]
    left = f" {', '.join(rest)} {'was' if len(rest) == 1 else 'were'} not installed." if rest else ""
    outcome = run.get_status_display().lower()
    step = f" at {run.failed_step}" if run.failed_step else ""
    return scheduled.stop(f"Stopped: the update to {run.to_version} {outcome}{step}.{left}", now)


def _request_hop(scheduled: ScheduledInstall, now: datetime) -> str | None:
    """Request the next hop's run; returns the refusal's sentence when it was not requested."""
    version = scheduled.next_version
    if version is None:
        scheduled.stop("Stopped: nothing left to install.", now)
        return "nothing left to install"
    key = f"{scheduled.pk.hex}-{len(scheduled.run_ids)}"
    try:
        run = actions.request_install(
            user=scheduled.requested_by, idempotency_key=key, target=version, again=scheduled.again
        )
    except actions.Refused as refused:
        if refused.postponable:
            _postpone(scheduled, now, refused.message)
        elif refused.kind == "active":
            scheduled.wait(f"Waiting: {refused.message}")
        else:
            scheduled.stop(f"Stopped: {refused.message}", now)
        return refused.message
    scheduled.hop_requested(run)
    return None


def _postpone(scheduled: ScheduledInstall, now: datetime, why: str) -> bool:
    policy = UpdatePolicy.load()
    following = policy.window.next_opening(now)
    if following is None:
        return scheduled.stop(
            f"Stopped: {why}, and the policy has no maintenance window to postpone to.", now
        )
    message = f"Postponed to {when_label(following, policy)}: {why}"
    if not scheduled.reschedule(following, message=message, in_window=True):
        return False
    _announce(scheduled, following)
    return True


def auto_schedule(now: datetime) -> bool:
    """Schedule the offered release into the next window when the policy installs it by itself."""
    policy = UpdatePolicy.load()
    if policy.mode == UpdatePolicy.Mode.MANUAL or ScheduledInstall.open() is not None:
        return False
    state = RegistryState.load()
    offer = state.offer()
    latest = offer.latest
    if (
        latest is None
        or offer.skipped
        or not offer.path
        or not policy.installs_automatically(latest.severity)
    ):
        return False
    if state.staleness(now).stale:
        return False
    if ScheduledInstall.objects.filter(target_version=latest.version, automatic=True).exists():
        return False  # once per release: an admin who cancelled it decides from here on
    if any(rules.previous_failure(hop.version) for hop in offer.path):
        return False  # never installed automatically again after it failed or rolled back here
    start = window_start_for(policy, now)
    if start is None:
        return False
    try:
        with transaction.atomic():
            scheduled = ScheduledInstall.create(
                target_version=latest.version,
                hops=[r.version for r in offer.path],
                not_before=start,
                in_window=True,
                automatic=True,
            )
    except ScheduleRefused:
        return False
    _announce(scheduled, start)
    return True


def _announce(scheduled: ScheduledInstall, start: datetime) -> None:
    """Tell the admins (mail and channels) when a scheduled install will start."""
    if scheduled.announced_for == start:
        return
    scheduled.mark_announced(start)
    version = scheduled.target_version
    transaction.on_commit(
        lambda: signals.install_scheduled.send(
            sender=ScheduledInstall, version=version, scheduled_for=start, scheduled_id=scheduled.pk
        )
    )
