"""The shapes the agent sends and the names they use (SPEC §5, §6, §7), as TypedDicts and tuples.

`STEPS` is the SPEC's order of the steps of a run; `ROLLBACK` follows when one of them failed
after `migrate` began. Step and run states are those an event may carry.
"""

from __future__ import annotations

from typing import Literal, TypedDict

StepName = Literal["preflight", "backup", "fetch", "build", "migrate", "deploy", "healthcheck", "rollback"]
StepState = Literal["started", "succeeded", "failed", "skipped"]
RunState = Literal["running", "succeeded", "failed", "rolled_back"]
EventKind = Literal["step", "log", "run"]

STEPS: tuple[StepName, ...] = ("preflight", "backup", "fetch", "build", "migrate", "deploy", "healthcheck")
ROLLBACK: StepName = "rollback"
STEP_NAMES: tuple[StepName, ...] = (*STEPS, ROLLBACK)
STEP_STATES: tuple[StepState, ...] = ("started", "succeeded", "failed", "skipped")
RUN_STATES: tuple[RunState, ...] = ("running", "succeeded", "failed", "rolled_back")
TERMINAL_RUN_STATES: tuple[RunState, ...] = ("succeeded", "failed", "rolled_back")
EVENT_KINDS: tuple[EventKind, ...] = ("step", "log", "run")


class _EventRequired(TypedDict):
    seq: int  # 1, 2, … per run; (run_id, seq) is unique
    kind: EventKind
    at: str  # ISO 8601


class Event(_EventRequired, total=False):
    """One event of a run: `step` and `state` for kind step, `state` for run, `lines` for log."""

    step: str
    state: str
    message: str
    lines: list[str]


class EventsBody(TypedDict):
    """`POST /api/updates/agent/events`."""

    run_id: str
    events: list[Event]


class HeartbeatBody(TypedDict):
    """`POST /api/updates/agent/heartbeat`."""

    agent_id: str
    agent_version: str
    deployed_version: str
    busy: bool
    run_id: str | None
    at: str


class UnsignedTrigger(TypedDict):
    """The trigger file's fields that its signature covers (SPEC §5)."""

    run_id: str
    target_version: str
    git_tag: str
    git_commit: str | None
    requested_by: str
    requested_at: str
    manifest: str  # base64 of the registry body as fetched


class TriggerFile(UnsignedTrigger):
    """The trigger file's content: the fields and their hex HMAC-SHA256."""

    signature: str
