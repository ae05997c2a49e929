"""What the host agent last told us about itself (SPEC §6 heartbeat)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


@dataclass(frozen=True)
class AgentStatus:
    online: bool
    agent: AgentHeartbeat | None

    @property
    def last_seen(self) -> datetime | None:
        return self.agent.last_seen if self.agent else None


class AgentHeartbeat(models.Model):
    agent_id = models.CharField(max_length=255, unique=True, help_text="The agent's host name.")
    agent_version = models.CharField(max_length=64, blank=True)
    deployed_version = models.CharField(max_length=64, blank=True)
    busy = models.BooleanField(default=False)
    run_id = models.UUIDField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True, help_text="The agent's own clock.")
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.agent_id

    @classmethod
    def record(
        cls,
        *,
        agent_id: str,
        agent_version: str,
        deployed_version: str,
        busy: bool,
        run_id: uuid.UUID | None,
        reported_at: datetime | None,
    ) -> AgentHeartbeat:
        heartbeat, _ = cls.objects.update_or_create(
            agent_id=agent_id,
            defaults={
                "agent_version": agent_version,
                "deployed_version": deployed_version,
                "busy": busy,
                "run_id": run_id,
                "reported_at": reported_at,
                "last_seen": timezone.now(),
            },
        )
        return heartbeat

    @classmethod
    def status(cls, now: datetime | None = None) -> AgentStatus:
        """Online when any agent sent a heartbeat within OPENTRACE_AGENT_OFFLINE_AFTER seconds."""
        now = now or timezone.now()
        latest = cls.objects.order_by("-last_seen").first()
        horizon = now - timedelta(seconds=settings.OPENTRACE_AGENT_OFFLINE_AFTER)
        return AgentStatus(online=latest is not None and latest.last_seen >= horizon, agent=latest)
