from __future__ import annotations

from updates.channels.models import NotificationChannel
from updates.models.agents import AcceptedRequest, AgentHeartbeat
from updates.models.backups import BackupSet, Verification
from updates.models.policy import ScheduledInstall, ScheduleRefused, ScheduleStatus, UpdatePolicy
from updates.models.registry import RegistryCheck, RegistryState
from updates.models.runs import (
    EventIn,
    RunAlreadyActive,
    RunStatus,
    TransitionRefused,
    UpdateEvent,
    UpdateRun,
)

__all__ = [
    "AcceptedRequest",
    "AgentHeartbeat",
    "BackupSet",
    "EventIn",
    "NotificationChannel",
    "RegistryCheck",
    "RegistryState",
    "RunAlreadyActive",
    "RunStatus",
    "ScheduleRefused",
    "ScheduleStatus",
    "ScheduledInstall",
    "TransitionRefused",
    "UpdateEvent",
    "UpdatePolicy",
    "UpdateRun",
    "Verification",
]
