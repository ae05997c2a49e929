"""Update notices: which update events mail the operators, and what the mails say.

Receivers of `updates.signals` only enqueue a Celery task (smtpconfig.tasks) after the
transaction commits; they swallow every error, so a notice can never fail a check or an
update. The tasks call back into `update_available_notice()` / `run_notice()` here to build
the message from the current database state, and `smtpconfig.notices.deliver()` sends it
once per recipient. Connected by `SmtpConfigConfig.ready()`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from smtpconfig.models import NoticeLog
from smtpconfig.notices import Notice
from updates import signals

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
RUN_STATUS_KINDS = {
    "running": NoticeLog.Kind.RUN_STARTED,
    "succeeded": NoticeLog.Kind.RUN_SUCCEEDED,
    "failed": NoticeLog.Kind.RUN_FAILED,
    "rolled_back": NoticeLog.Kind.RUN_FAILED,
}
# Publishing to the broker must not hold up the request or agent call that changed state.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


# --- receivers ---------------------------------------------------------------------------
def on_update_available(sender: Any, *, version: str, severity: str = "", notes: str = "", **_: Any) -> None:
    from smtpconfig.tasks import send_update_available_notice

    _enqueue(send_update_available_notice, str(version), str(severity or ""), str(notes or ""))


def on_run_status_changed(sender: Any, *, run_id: Any, new_status: str, **_: Any) -> None:
    if new_status not in RUN_STATUS_KINDS:
        return
    from smtpconfig.tasks import send_run_notice

    _enqueue(send_run_notice, str(run_id), str(new_status))


def _enqueue(task: Any, *args: str) -> None:
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


# --- messages ----------------------------------------------------------------------------
def _absolute(path: str) -> str:
    return f"{settings.OPENTRACE_BASE_URL}{path}"


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
        text=render_to_string(f"smtpconfig/notices/{kind}.txt", context),
        html=render_to_string(f"smtpconfig/notices/{kind}.html", context),
    )


def _one_line(value: str, limit: int) -> str:
    """A registry-supplied value made safe for a subject line and a log key."""
    return " ".join(str(value).split())[:limit]


def update_available_notice(version: str, severity: str = "", notes: str = "") -> Notice:
    instance = settings.OPENTRACE_INSTANCE_NAME
    version, severity = _one_line(version, 64), _one_line(severity, 32)
    label = f" ({severity})" if severity and severity != "normal" else ""
    subject = f"[{instance}] OpenTrace {version} is available{label}"
    context = {**_base_context(), "version": version, "severity": severity, "notes": notes}
    return _render(NoticeLog.Kind.UPDATE_AVAILABLE, version, subject, context)


def log_tail(run: Any, limit: int = LOG_TAIL_LINES) -> list[str]:
    """The last `limit` log lines of a run, oldest first."""
    return [str(line) for line in run.log_lines(tail=limit)]


def _run_link(run: Any) -> str:
    try:
        return _absolute(reverse("admin:updates_updaterun_change", args=[run.pk]))
    except NoReverseMatch:
        return _absolute(reverse("admin:index"))


def _requested_by(run: Any) -> str:
    # The username is kept on the run even after the user is deleted.
    name = getattr(run, "requested_by_username", "")
    if name:
        return str(name)
    user = getattr(run, "requested_by", None)
    if user is None:
        return ""
    return user.get_username() if hasattr(user, "get_username") else str(user)


def run_notice(run_id: str, new_status: str) -> Notice | None:
    """The notice for a run reaching `new_status`, or None when the run is gone or the
    status gets no notice."""
    kind = RUN_STATUS_KINDS.get(new_status)
    if kind is None:
        return None
    UpdateRun = apps.get_model("updates", "UpdateRun")
    try:
        run = UpdateRun.objects.get(pk=uuid.UUID(str(run_id)))
    except (UpdateRun.DoesNotExist, ValueError):
        logger.info("Update run %s is gone; no notice", run_id)
        return None

    instance = settings.OPENTRACE_INSTANCE_NAME
    target = f"{run.from_version} → {run.to_version}"
    subjects = {
        "running": f"[{instance}] Update to {run.to_version} started",
        "succeeded": f"[{instance}] Update to {run.to_version} succeeded",
        "failed": f"[{instance}] Update to {run.to_version} FAILED",
        "rolled_back": f"[{instance}] Update to {run.to_version} failed and was rolled back",
    }
    duration = run.duration
    context = {
        **_base_context(),
        "run": run,
        "status": new_status,
        "target": target,
        "requested_by": _requested_by(run),
        "duration": str(duration).split(".")[0] if duration is not None else "",
        "run_url": _run_link(run),
        "log_tail": log_tail(run) if kind == NoticeLog.Kind.RUN_FAILED else [],
        "log_tail_limit": LOG_TAIL_LINES,
    }
    return _render(kind, f"{run.pk}:{new_status}", subjects[new_status], context)
