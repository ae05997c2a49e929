"""The JSON the System updates page polls (`updates_progress`): its shapes, and how a run fills them.

The page's script (updates/templates/updates/system.html) reads these keys; the page itself
renders the same `RunProgress` on first load, so a reload never changes what the admin reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

from django.urls import reverse

from updates.models import AgentHeartbeat, UpdateRun

LOG_TAIL = 200  # log lines the page shows; the run's admin page has all of them


class StepProgress(TypedDict):
    name: str
    state: str  # started | succeeded | failed | skipped
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    message: str


class RunProgress(TypedDict):
    id: str
    status: str
    status_display: str
    terminal: bool
    from_version: str
    to_version: str
    requested_by: str
    requested_at: str | None
    started_at: str | None
    finished_at: str | None
    failed_step: str
    outcome: str  # UpdateRun.outcome: the one wording of what the run came to
    error: str
    rollback_cause: str
    steps: list[StepProgress]
    log_tail: list[str]
    url: str


class AgentProgress(TypedDict):
    online: bool
    last_seen: str | None


class Progress(TypedDict):
    running_version: str
    agent: AgentProgress
    run: RunProgress | None
    # Only for those who may install: lets the page bring the Install button back (or say
    # why not) once the run has ended.
    install_refusal: NotRequired[str | None]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_progress(run: UpdateRun) -> RunProgress:
    steps: list[StepProgress] = [
        {
            "name": step["name"],
            "state": step["state"],
            "started_at": _iso(step["started_at"]),
            "finished_at": _iso(step["finished_at"]),
            "duration_seconds": step["duration"].total_seconds() if step["duration"] else None,
            "message": step["message"],
        }
        for step in run.step_timeline()
    ]
    return {
        "id": str(run.pk),
        "status": run.status,
        "status_display": run.get_status_display(),
        "terminal": run.is_terminal,
        "from_version": run.from_version,
        "to_version": run.to_version,
        "requested_by": run.requested_by_username,
        "requested_at": _iso(run.requested_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "failed_step": run.failed_step,
        "outcome": run.outcome,
        "error": run.error,
        "rollback_cause": run.rollback_cause,
        "steps": steps,
        "log_tail": run.log_lines(tail=LOG_TAIL),
        "url": reverse("admin:updates_updaterun_change", args=[run.pk]),
    }


def progress(*, running_version: str, run: UpdateRun | None) -> Progress:
    agent = AgentHeartbeat.status()
    return {
        "running_version": running_version,
        "agent": {"online": agent.online, "last_seen": _iso(agent.last_seen)},
        "run": run_progress(run) if run else None,
    }
