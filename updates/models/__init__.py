from __future__ import annotations

from updates.models.agents import AgentHeartbeat, AgentStatus
from updates.models.registry import RegistryCheck, RegistryState
from updates.models.runs import (
    ACTIVE,
    TERMINAL,
    EventIn,
    RunAlreadyActive,
    RunError,
    RunStatus,
    TransitionRefused,
    UpdateEvent,
    UpdateRun,
)

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "AgentHeartbeat",
    "AgentStatus",
    "EventIn",
    "RegistryCheck",
    "RegistryState",
    "RunAlreadyActive",
    "RunError",
    "RunStatus",
    "TransitionRefused",
    "UpdateEvent",
    "UpdateRun",
]
