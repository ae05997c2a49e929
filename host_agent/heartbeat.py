"""Heartbeats (SPEC §6): right after start and every `interval` seconds; best effort, never queued."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime

from host_agent import AGENT_VERSION
from host_agent.backend import HEARTBEAT_PATH, BackendClient
from host_agent.clock import UTC
from host_agent.errors import DeliveryError
from host_agent.reporter import utc_now_iso

logger = logging.getLogger("host_agent.heartbeat")


class Heartbeat:
    def __init__(
        self,
        client: BackendClient,
        deployed_version: Callable[[], str],
        *,
        interval: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.deployed_version = deployed_version
        self.interval = interval
        self.monotonic = monotonic
        self.now = now
        self.last_sent: float | None = None
        self.last_error: str | None = None

    def payload(self, busy: bool, run_id: str | None) -> dict[str, object]:
        return {
            "agent_id": socket.gethostname(),
            "agent_version": AGENT_VERSION,
            "deployed_version": self.deployed_version(),
            "busy": busy,
            "run_id": run_id,
            "at": utc_now_iso(self.now),
        }

    def seconds_until_due(self) -> float:
        if self.last_sent is None:
            return 0.0
        return max(0.0, self.last_sent + self.interval - self.monotonic())

    def beat(self, busy: bool = False, run_id: str | None = None) -> bool:
        self.last_sent = self.monotonic()
        try:
            self.client.post(HEARTBEAT_PATH, self.payload(busy, run_id))
        except DeliveryError as exc:
            if exc.status != self.last_error:
                logger.warning("heartbeat not delivered: %s", exc)
            self.last_error = str(exc)
            return False
        self.last_error = None
        return True

    def beat_if_due(self, busy: bool = False, run_id: str | None = None) -> bool:
        if self.seconds_until_due() > 0:
            return False
        return self.beat(busy, run_id)
