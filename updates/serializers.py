"""The JSON the System updates page polls (`updates_progress`): its shapes, and how a run fills them.

The page's script (updates/templates/updates/system.html) reads these keys; the page itself
renders the same `RunProgress` on first load, so a reload never changes what the admin reads.

Progress never goes backwards on the page. Every run status and step state has a rank
(`STATUS_RANK`, `STEP_RANK`); the script keeps, per run id, the highest status it has shown
and every step row it has drawn, and tells the endpoint what it has shown (`seen`). The
endpoint then never answers with an earlier status than that one: when the database is
behind (a rollback restored it from the backup, and the agent is replaying its report) the
answer keeps the status shown and says `catching_up`.
"""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

from django.urls import reverse
from django.utils import timezone

from contract import events
from updates.formatting import format_duration
from updates.models import AgentHeartbeat, RunStatus, UpdateRun
from updates.models.agents import AgentStatus
from updates.outcome import readable_steps

LOG_TAIL = 200  # log lines the page shows; the run's admin page has all of them

# Requested, then running, then an end; the ends are equal (terminal states never change).
STATUS_RANK: dict[str, int] = {
    RunStatus.REQUESTED: 0,
    RunStatus.RUNNING: 1,
    **{status: 2 for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ROLLED_BACK)},
    **{status: 2 for status in (RunStatus.EXPIRED, RunStatus.CANCELLED)},
}
STEP_RANK: dict[str, int] = {"started": 1, "succeeded": 2, "failed": 2, "skipped": 2}
# The steps the agent runs, in order (SPEC §7, host_agent.steps.STEPS), for "step 3 of 7".
STEP_ORDER = events.STEPS


class StepProgress(TypedDict):
    name: str
    state: str  # started | succeeded | failed | skipped
    rank: int  # STEP_RANK[state]
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    duration_display: str  # "0.9 s", "2 min 05 s"; "" while it runs
    message: str  # the agent's words, repair advice the rollback made moot left out
    summary: str  # the message in one line, for the step table


class RunProgress(TypedDict):
    id: str
    status: str
    status_display: str
    status_rank: int  # STATUS_RANK[status]
    terminal: bool
    catching_up: bool  # the record is behind what this page already showed (see module doc)
    from_version: str
    to_version: str
    requested_by: str
    requested_at: str | None
    started_at: str | None
    finished_at: str | None
    elapsed_seconds: float | None
    elapsed_display: str
    failed_step: str
    current_step: str  # "deploy (5 of 7)" while running, else ""
    outcome: str  # UpdateRun.outcome: the one sentence of what the run came to
    outcome_tone: str  # success | failure | warning | neutral | progress
    outcome_detail: str  # the agent's full text behind the sentence (collapsible)
    error: str
    rollback_cause: str
    steps: list[StepProgress]
    log_tail: list[str]
    url: str


class AgentProgress(TypedDict):
    online: bool
    last_seen: str | None
    busy_with: str | None  # the run id the agent says it works on


class Progress(TypedDict):
    running_version: str
    agent: AgentProgress
    run: RunProgress | None
    # Only for those who may install: lets the page bring the Install button back (or say
    # why not) once the run has ended.
    install_refusal: NotRequired[str | None]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def claimed_by_agent(run: UpdateRun, agent: AgentStatus) -> bool:
    """The agent's heartbeat says it is working on this run (its events may still be on the way)."""
    heartbeat = agent.agent
    return bool(agent.online and heartbeat and heartbeat.busy and heartbeat.run_id == run.pk)


def _current_step(steps: list[StepProgress]) -> str:
    running = [s for s in steps if s["state"] == "started"]
    if not running:
        return ""
    name = running[-1]["name"]
    if name in STEP_ORDER:
        return f"{name} ({STEP_ORDER.index(name) + 1} of {len(STEP_ORDER)})"
    return name


def run_progress(run: UpdateRun, *, agent: AgentStatus | None = None, seen: str | None = None) -> RunProgress:
    """The progress of `run`; `seen` is the status the page already showed for it."""
    agent = agent or AgentHeartbeat.status()
    parts = run.outcome_parts()
    steps: list[StepProgress] = [
        {
            "name": step["name"],
            "state": step["state"],
            "rank": STEP_RANK.get(step["state"], 0),
            "started_at": _iso(step["started_at"]),
            "finished_at": _iso(step["finished_at"]),
            "duration_seconds": step["duration"].total_seconds() if step["duration"] else None,
            "duration_display": format_duration(step["duration"]),
            "message": step["message"],
            "summary": step["summary"],
        }
        for step in readable_steps(run)
    ]
    status = str(run.status)
    display = run.get_status_display()
    outcome, tone = parts.headline, parts.tone
    catching_up = False
    if status == RunStatus.REQUESTED and claimed_by_agent(run, agent):
        # Claimed: the agent said so in its heartbeat; its step reports may be a moment behind.
        status, display = RunStatus.RUNNING, RunStatus.RUNNING.label
        outcome, tone = f"Updating {run.from_version} → {run.to_version}…", "progress"
    if seen in STATUS_RANK and STATUS_RANK[seen] > STATUS_RANK.get(status, 0):
        status, display, catching_up = seen, RunStatus(seen).label, True
        outcome = "The update's record is catching up with the host agent's report…"
    started = run.started_at
    elapsed = (run.finished_at or timezone.now()) - started if started else None
    return {
        "id": str(run.pk),
        "status": status,
        "status_display": display,
        "status_rank": STATUS_RANK.get(status, 0),
        "terminal": run.is_terminal,
        "catching_up": catching_up,
        "from_version": run.from_version,
        "to_version": run.to_version,
        "requested_by": run.requested_by_username,
        "requested_at": _iso(run.requested_at),
        "started_at": _iso(started),
        "finished_at": _iso(run.finished_at),
        "elapsed_seconds": elapsed.total_seconds() if elapsed is not None else None,
        "elapsed_display": format_duration(elapsed),
        "failed_step": run.failed_step,
        "current_step": _current_step(steps) if status == RunStatus.RUNNING else "",
        "outcome": outcome,
        "outcome_tone": tone,
        "outcome_detail": parts.detail,
        "error": run.error,
        "rollback_cause": run.rollback_cause,
        "steps": steps,
        "log_tail": run.log_lines(tail=LOG_TAIL),
        "url": reverse("admin:updates_updaterun_change", args=[run.pk]),
    }


def progress(*, running_version: str, run: UpdateRun | None, seen: str | None = None) -> Progress:
    agent = AgentHeartbeat.status()
    heartbeat = agent.agent
    return {
        "running_version": running_version,
        "agent": {
            "online": agent.online,
            "last_seen": _iso(agent.last_seen),
            "busy_with": str(heartbeat.run_id) if heartbeat and heartbeat.busy and heartbeat.run_id else None,
        },
        "run": run_progress(run, agent=agent, seen=seen) if run else None,
    }
