"""What the host agent last told us about itself (SPEC §6 heartbeat)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
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


class AcceptedRequest(models.Model):
    """A signed agent request the API accepted (SPEC §6 replay protection).

    A (timestamp, signature) pair verifies for as long as its timestamp is within the allowed
    skew of the receiver's clock; the row is kept that long, so the same pair sent again (a
    recorded heartbeat replayed to keep a dead agent "online") finds it and is refused. In the
    database because every web worker, and `make run`'s single one, shares it; the unique
    constraint decides between two workers receiving the same pair at once.
    """

    timestamp = models.BigIntegerField(db_index=True, help_text="The request's signed Unix time.")
    signature = models.CharField(max_length=80)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["timestamp", "signature"], name="updates_accepted_request_once")
        ]

    def __str__(self) -> str:
        return f"{self.timestamp} {self.signature[:19]}…"

    @classmethod
    def claim(cls, timestamp: int, signature: str, *, now: float, window: int) -> bool:
        """Record the pair; False when it was already accepted. Call inside the request's
        transaction, so a request that fails leaves no record and can be sent again."""
        # A pair whose timestamp is out of the window can never verify again: forget it.
        cls.objects.filter(timestamp__lt=int(now) - window - 1).delete()
        try:
            with transaction.atomic():
                cls.objects.create(timestamp=timestamp, signature=signature)
        except IntegrityError:
            return False
        return True
