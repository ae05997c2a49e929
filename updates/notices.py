"""Update notices (SPEC §10): which update events reach the operators, and what the mails say.

The receivers of `updates.signals` (connected by `UpdatesConfig.ready()`) only enqueue
tasks of `updates.tasks` once the transaction commits, and swallow every error, so a notice
can never fail a check or an update. Each event gets two tasks: the mail task calls
`update_available_notice()` or `run_notice()` here to build the message from the database
as it is then and hands it to `smtpconfig.notices.deliver()`, which sends it once per
recipient; the channel task (`announce_to_channels`) fans it out to every enabled
notification channel that gets it (`updates.channels`), one task per channel. The notice
log's `kind` is a `NoticeKind`; the mail app stores it without reading it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from contract.registry import Release, parse_version
from smtpconfig.notices import Notice
from updates import signals
from updates.models import RegistryState, RunStatus, UpdateRun
from updates.notice_kinds import NoticeKind

logger = logging.getLogger(__name__)

KIND_UPDATE_AVAILABLE = str(NoticeKind.UPDATE_AVAILABLE)
KIND_RUN_STARTED = str(NoticeKind.RUN_STARTED)
KIND_RUN_SUCCEEDED = str(NoticeKind.RUN_SUCCEEDED)
KIND_RUN_FAILED = str(NoticeKind.RUN_FAILED)  # failed or rolled back: the same people must act on both
KIND_INSTALL_SCHEDULED = str(NoticeKind.INSTALL_SCHEDULED)

RUN_STATUS_KINDS: dict[str, str] = {
    RunStatus.RUNNING: KIND_RUN_STARTED,
    RunStatus.SUCCEEDED: KIND_RUN_SUCCEEDED,
    RunStatus.FAILED: KIND_RUN_FAILED,
    RunStatus.ROLLED_BACK: KIND_RUN_FAILED,
}
LOG_TAIL_LINES = 50
# Publishing to the broker must not hold up the request or agent call that changed state.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


# --- receivers ---------------------------------------------------------------------------
# Sources of channel notices: what `updates.channels.messages.build()` is asked to announce.
CHANNEL_UPDATE_AVAILABLE = "update_available"
CHANNEL_RUN_STATUS = "run_status"
CHANNEL_INSTALL_SCHEDULED = "install_scheduled"


def on_update_available(sender: Any, *, version: str, **_: Any) -> None:
    from updates.tasks import announce_to_channels, send_update_available_notice

    _enqueue(send_update_available_notice, str(version))
    _enqueue(announce_to_channels, CHANNEL_UPDATE_AVAILABLE, [str(version)])


def on_run_status_changed(sender: Any, *, run_id: Any, new_status: str, **_: Any) -> None:
    if new_status not in RUN_STATUS_KINDS:
        return
    from updates.tasks import announce_to_channels, send_run_notice

    _enqueue(send_run_notice, str(run_id), str(new_status))
    _enqueue(announce_to_channels, CHANNEL_RUN_STATUS, [str(run_id), str(new_status)])


def on_install_scheduled(sender: Any, *, version: str, scheduled_for: Any, **_: Any) -> None:
    from updates.tasks import announce_to_channels, send_install_scheduled_notice

    when = scheduled_for.isoformat() if hasattr(scheduled_for, "isoformat") else str(scheduled_for)
    _enqueue(send_install_scheduled_notice, str(version), when)
    _enqueue(announce_to_channels, CHANNEL_INSTALL_SCHEDULED, [str(version), when])


def _enqueue(task: Any, *args: Any) -> None:
    """Publish `task(*args)` once the transaction commits; never raise.

    Not `task.delay_on_commit()`: a broker that is down would raise out of the commit into
    the request or the agent's report that caused the notice.
    """

    def publish() -> None:
        try:
            task.apply_async(args=args, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        except Exception:
            logger.exception("Could not enqueue %s%r; the notice is lost", task.name, args)

    try:
        transaction.on_commit(publish)
    except Exception:
        logger.exception("Could not schedule %s%r", task.name, args)


def connect() -> None:
    signals.update_available.connect(on_update_available, dispatch_uid="notices.update_available")
    signals.run_status_changed.connect(on_run_status_changed, dispatch_uid="notices.run_status_changed")
    signals.install_scheduled.connect(on_install_scheduled, dispatch_uid="notices.install_scheduled")


# --- messages ----------------------------------------------------------------------------
def _absolute(path: str) -> str:
    return f"{settings.OPENTRACE_BASE_URL}{path}"


def absolute_url(url_name: str) -> str:
    """The absolute address of an admin page, or of the admin's index when it is not there."""
    try:
        return _absolute(reverse(url_name))
    except NoReverseMatch:
        return _absolute(reverse("admin:index"))


def _base_context() -> dict[str, Any]:
    return {
        "instance_name": settings.OPENTRACE_INSTANCE_NAME,
        "base_url": settings.OPENTRACE_BASE_URL,
        "running_version": settings.OPENTRACE_VERSION,
        "admin_url": _absolute(reverse("admin:index")),
    }


def _render(kind: str, key: str, subject: str, context: dict[str, Any]) -> Notice:
    context = {**context, "subject": subject}
    return Notice(
        kind=kind,
        key=key,
        subject=subject,
        text=render_to_string(f"updates/notices/{kind}.txt", context),
        html=render_to_string(f"updates/notices/{kind}.html", context),
    )


def one_line(value: str, limit: int) -> str:
    """A registry-supplied value made safe for a subject line and a log key."""
    return " ".join(str(value).split())[:limit]


def offered_release(version: str) -> Release | None:
    """The release `version` among those the last check stored, when it is still newer than
    the running version; None when it is no longer offered (withdrawn since, or installed)."""
    wanted, running = parse_version(version), parse_version(settings.OPENTRACE_VERSION)
    releases = RegistryState.load().release_list() if wanted is not None else []
    release = next((r for r in releases if parse_version(r.version) == wanted), None)
    if release is None or (running is not None and release.parsed_version <= running):
        logger.info("Version %.64r is no longer offered; no notice", version)
        return None
    return release


def update_available_notice(version: str) -> Notice | None:
    """The "new version available" notice for `version`; None when it is no longer offered."""
    release = offered_release(version)
    if release is None:
        return None
    instance = settings.OPENTRACE_INSTANCE_NAME
    shown, severity = one_line(release.version, 64), one_line(release.severity, 32)
    label = f" ({severity})" if severity and severity != "normal" else ""
    subject = f"[{instance}] OpenTrace {shown} is available{label}"
    context = {
        **_base_context(),
        "version": shown,
        "severity": severity,
        "notes": release.notes,
        "failed_here": failed_here(release.version),
    }
    return _render(KIND_UPDATE_AVAILABLE, shown, subject, context)


def failed_here(version: str) -> str:
    """ "1.1.7 rolled back here on … at migrate: …" when it did (issue 20: flagged wherever offered)."""
    from updates.rules import previous_failure

    failure = previous_failure(version)
    return f"{failure.sentence()}." if failure else ""


def run_link(run: UpdateRun) -> str:
    try:
        return _absolute(reverse("admin:updates_updaterun_change", args=[run.pk]))
    except NoReverseMatch:
        return _absolute(reverse("admin:index"))


def requested_by(run: UpdateRun) -> str:
    # The username is kept on the run even after the user is deleted.
    if run.requested_by_username:
        return run.requested_by_username
    return run.requested_by.get_username() if run.requested_by is not None else ""


def run_notice(run_id: str, new_status: str) -> Notice | None:
    """The notice for a run reaching `new_status`, or None when the run is gone or the
    status gets no notice."""
    kind = RUN_STATUS_KINDS.get(new_status)
    if kind is None:
        return None
    try:
        run = UpdateRun.objects.select_related("requested_by").get(pk=uuid.UUID(str(run_id)))
    except (UpdateRun.DoesNotExist, ValueError):
        logger.info("Update run %.64r is gone; no notice", run_id)
        return None

    instance = settings.OPENTRACE_INSTANCE_NAME
    subjects: dict[str, str] = {
        RunStatus.RUNNING: f"[{instance}] Update to {run.to_version} started",
        RunStatus.SUCCEEDED: f"[{instance}] Update to {run.to_version} succeeded",
        RunStatus.FAILED: f"[{instance}] Update to {run.to_version} FAILED",
        RunStatus.ROLLED_BACK: f"[{instance}] Update to {run.to_version} failed and was rolled back",
    }
    duration = run.duration
    context = {
        **_base_context(),
        "run": run,
        "status": new_status,
        "target": f"{run.from_version} → {run.to_version}",
        "requested_by": requested_by(run),
        "duration": str(duration).split(".")[0] if duration is not None else "",
        "run_url": run_link(run),
        "outcome": run.outcome_parts(),  # headline, cause ("Error"), rollback ("Rollback")
        "log_tail": run.log_lines(tail=LOG_TAIL_LINES) if kind == KIND_RUN_FAILED else [],
        "log_tail_limit": LOG_TAIL_LINES,
    }
    return _render(kind, f"{run.pk}:{new_status}", subjects[new_status], context)


@dataclass(frozen=True)
class ScheduledFacts:
    """What a "scheduled install ahead" notice says, for the mail and the channels alike."""

    version: str  # the approved release
    path: str  # "1.1.8, then 1.2.0", or the version alone
    when: datetime
    when_label: str  # "Sunday 2026-12-06 03:00 UTC", in the policy's time zone
    automatic: bool
    reason: str  # why it moved (postponed, rescheduled), or ""

    @property
    def headline(self) -> str:
        return f"{self.path} will be installed on {self.when_label} — cancel or reschedule"


def scheduled_facts(version: str, scheduled_for: str) -> ScheduledFacts | None:
    """The facts of the open scheduled install of `version` starting at `scheduled_for`; None
    when it is no longer open or moved to another time (a newer notice names that)."""
    from updates.models import ScheduledInstall, UpdatePolicy
    from updates.window import local_label

    try:
        when = datetime.fromisoformat(scheduled_for)
    except ValueError:
        return None
    scheduled = ScheduledInstall.open()
    if scheduled is None or scheduled.target_version != version or scheduled.not_before != when:
        logger.info("The install of %.64r at %.40s is no longer scheduled; no notice", version, scheduled_for)
        return None
    policy = UpdatePolicy.load()
    return ScheduledFacts(
        version=one_line(version, 64),
        path=one_line(scheduled.path_display, 200),
        when=when,
        when_label=local_label(when, policy.time_zone),
        automatic=scheduled.automatic,
        reason=scheduled.message,
    )


def install_scheduled_notice(version: str, scheduled_for: str) -> Notice | None:
    """The mail before a scheduled install; None when it is no longer scheduled then."""
    facts = scheduled_facts(version, scheduled_for)
    if facts is None:
        return None
    instance = settings.OPENTRACE_INSTANCE_NAME
    subject = f"[{instance}] {facts.headline}"
    context = {**_base_context(), "facts": facts, "system_url": absolute_url("updates_system")}
    return _render(KIND_INSTALL_SCHEDULED, f"{facts.version}:{facts.when.isoformat()}", subject, context)
