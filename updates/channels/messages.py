"""What a channel notice says: the webhook's JSON body and the chat services' title and text.

Built from the database as it is when the task runs (tasks take ids, SPEC style), from the
same facts as the mail (`updates.notices`). The body's shape is documented in
docs/notices.md; change them together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from django.conf import settings
from django.utils import timezone

from updates import notices
from updates.models import RunStatus, UpdateRun
from updates.notice_kinds import SECURITY_SEVERITIES, TEST, NoticeKind

CHAT_LOG_LINES = 10  # chat services cut long messages; the webhook gets notices.LOG_TAIL_LINES


class ReleaseInfo(TypedDict):
    version: str
    severity: str
    notes: str


class RunInfo(TypedDict):
    id: str
    outcome: str
    failed_step: str
    error: str
    requested_by: str
    started_at: str | None
    finished_at: str | None
    log_tail: list[str]
    url: str


@dataclass(frozen=True)
class ChannelMessage:
    event: str  # a NoticeKind value, or "test"
    key: str  # unique within the event, like the mail's notice key
    title: str
    text: str
    body: dict[str, Any]  # the webhook body
    notify_type: str = "info"  # info | success | warning | failure, for chat services


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _body(
    event: str,
    key: str,
    title: str,
    text: str,
    *,
    from_version: str,
    to_version: str,
    release: ReleaseInfo | None = None,
    run: RunInfo | None = None,
    scheduled_for: str | None = None,
) -> dict[str, Any]:
    return {
        "event": event,
        "notice_id": f"{event}:{key}",
        "test": event == TEST,
        "title": title,
        "text": text,
        "created_at": timezone.now().isoformat(),
        "instance": {"name": settings.OPENTRACE_INSTANCE_NAME, "url": settings.OPENTRACE_BASE_URL},
        "versions": {"running": settings.OPENTRACE_VERSION, "from": from_version, "to": to_version},
        "release": release,
        "run": run,
        "scheduled_for": scheduled_for,
    }


def _lines(*parts: str) -> str:
    return "\n".join(part for part in parts if part)


def update_available(version: str) -> ChannelMessage | None:
    release = notices.offered_release(version)
    if release is None:
        return None
    shown = notices.one_line(release.version, 64)
    severity = notices.one_line(release.severity, 32)
    security = severity in SECURITY_SEVERITIES
    event = NoticeKind.SECURITY_RELEASE if security else NoticeKind.UPDATE_AVAILABLE
    instance = settings.OPENTRACE_INSTANCE_NAME
    label = f" ({severity} release)" if security else ""
    title = f"[{instance}] OpenTrace {shown} is available{label}"
    text = _lines(
        f"OpenTrace {shown} is available for {instance} (running {settings.OPENTRACE_VERSION}).",
        notices.failed_here(release.version),
        f"Install it from {notices.absolute_url('updates_system')}",
    )
    info: ReleaseInfo = {"version": shown, "severity": severity, "notes": release.notes}
    body = _body(
        event, shown, title, text, from_version=settings.OPENTRACE_VERSION, to_version=shown, release=info
    )
    return ChannelMessage(str(event), shown, title, text, body, "warning" if security else "info")


_RUN_TITLES: dict[str, str] = {
    RunStatus.RUNNING: "Update to {to} started",
    RunStatus.SUCCEEDED: "Update to {to} succeeded",
    RunStatus.FAILED: "Update to {to} FAILED",
    RunStatus.ROLLED_BACK: "Update to {to} failed and was rolled back",
}
_RUN_TYPES: dict[str, str] = {
    RunStatus.RUNNING: "info",
    RunStatus.SUCCEEDED: "success",
    RunStatus.FAILED: "failure",
    RunStatus.ROLLED_BACK: "failure",
}


def run_status(run_id: str, new_status: str) -> ChannelMessage | None:
    event = notices.RUN_STATUS_KINDS.get(new_status)
    if event is None:
        return None
    try:
        run = UpdateRun.objects.select_related("requested_by").get(pk=uuid.UUID(str(run_id)))
    except (UpdateRun.DoesNotExist, ValueError):
        return None
    instance = settings.OPENTRACE_INSTANCE_NAME
    title = f"[{instance}] " + _RUN_TITLES[new_status].format(to=run.to_version)
    failed = event == NoticeKind.RUN_FAILED
    tail = run.log_lines(tail=notices.LOG_TAIL_LINES) if failed else []
    link = notices.run_link(run)
    info: RunInfo = {
        "id": str(run.pk),
        "outcome": new_status,
        "failed_step": run.failed_step or "",
        "error": run.error or "",
        "requested_by": notices.requested_by(run),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "log_tail": tail,
        "url": link,
    }
    chat_tail = "\n".join(tail[-CHAT_LOG_LINES:])
    text = _lines(
        f"{run.from_version} → {run.to_version} on {instance}.",
        f"Failed step: {run.failed_step}" if failed and run.failed_step else "",
        f"Error: {notices.one_line(run.error, 300)}" if failed and run.error else "",
        f"Last log lines:\n{chat_tail}" if chat_tail else "",
        f"Run: {link}",
    )
    key = f"{run.pk}:{new_status}"
    body = _body(event, key, title, text, from_version=run.from_version, to_version=run.to_version, run=info)
    return ChannelMessage(str(event), key, title, text, body, _RUN_TYPES[new_status])


def install_scheduled(version: str, scheduled_for: str) -> ChannelMessage | None:
    """A release scheduled into a maintenance window (`updates.schedule` sends
    `updates.signals.install_scheduled`); None once it is no longer scheduled for that time."""
    facts = notices.scheduled_facts(version, scheduled_for)
    if facts is None:
        return None
    shown = facts.version
    release = notices.offered_release(version)
    instance = settings.OPENTRACE_INSTANCE_NAME
    at = facts.when.isoformat()
    title = f"[{instance}] {facts.headline}"
    who = "by the update policy" if facts.automatic else "approved by an admin"
    text = _lines(
        f"{settings.OPENTRACE_VERSION} → {facts.path} on {instance}, {who}, starts {facts.when_label}.",
        facts.reason,
        f"To cancel or reschedule it: {notices.absolute_url('updates_system')}",
    )
    info: ReleaseInfo | None = (
        {"version": shown, "severity": notices.one_line(release.severity, 32), "notes": release.notes}
        if release is not None
        else None
    )
    key = f"{shown}:{at}"
    body = _body(
        NoticeKind.INSTALL_SCHEDULED,
        key,
        title,
        text,
        from_version=settings.OPENTRACE_VERSION,
        to_version=shown,
        release=info,
        scheduled_for=at,
    )
    return ChannelMessage(str(NoticeKind.INSTALL_SCHEDULED), key, title, text, body, "info")


def test(channel_name: str) -> ChannelMessage:
    key = uuid.uuid4().hex
    instance = settings.OPENTRACE_INSTANCE_NAME
    title = f"[{instance}] Test notice from OpenTrace"
    text = f"This is a test of the notification channel “{channel_name}”. It works."
    body = _body(
        TEST, key, title, text, from_version=settings.OPENTRACE_VERSION, to_version=settings.OPENTRACE_VERSION
    )
    return ChannelMessage(TEST, key, title, text, body, "info")


# What a channel task is asked to announce, and how many (string) arguments it takes.
BUILDERS: dict[str, tuple[Callable[..., ChannelMessage | None], int]] = {
    notices.CHANNEL_UPDATE_AVAILABLE: (update_available, 1),  # version
    notices.CHANNEL_RUN_STATUS: (run_status, 2),  # run id, new status
    notices.CHANNEL_INSTALL_SCHEDULED: (install_scheduled, 2),  # version, ISO 8601 time
}


def build(source: str, args: list[str]) -> ChannelMessage | None:
    """The message for `source(*args)`, or None when there is nothing (left) to announce."""
    builder, arity = BUILDERS.get(source, (None, 0))
    if builder is None or len(args) != arity:
        return None
    return builder(*[str(arg) for arg in args])
