"""Heartbeats (SPEC §6): right after start, every `interval` seconds, and at once when prompted.

Best effort, never queued. One thread sends them all (`run()`), so they reach the backend in
the order the agent's state changed. `prompt()` asks for one now: when a run starts or ends
(so the page never shows "busy" for an idle agent) and after the backend's database was
restored (which dropped the heartbeats recorded since the backup, so the agent looked
offline). A prompted heartbeat that is not delivered is retried every `retry_interval`.
"""

from __future__ import annotations

import logging
import socket
import threading
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
        retry_interval: float = 2.0,
        state: Callable[[], tuple[bool, str | None]] = lambda: (False, None),
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.deployed_version = deployed_version
        self.interval = interval
        self.retry_interval = retry_interval
        self.state = state
        self.monotonic = monotonic
        self.now = now
        self.last_sent: float | None = None
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._prompted = False  # a prompt came after the last beat read the state
        self._owed = False  # a prompted beat is not delivered yet

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
            if str(exc) != self.last_error:  # once per distinct failure, not every retry
                logger.warning("heartbeat not delivered: %s", exc)
            self.last_error = str(exc)
            return False
        self.last_error = None
        return True

    def send(self) -> bool:
        """One heartbeat with the agent's state as it is now (`state()`)."""
        # Cleared before the state is read: a prompt made after this point gets its own beat.
        self._prompted = False
        busy, run_id = self.state()
        delivered = self.beat(busy, run_id)
        if delivered:
            self._owed = False
        return delivered

    def prompt(self) -> None:
        """Ask `run()` for a heartbeat now; the agent's state has just changed."""
        self._prompted = True
        self._owed = True
        self._wake.set()

    def wake(self) -> None:
        """Interrupt `run()`'s wait, e.g. to let it notice the stop flag."""
        self._wake.set()

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next heartbeat is due or prompted; False when `run()` should end."""
        if not stop.is_set():
            self._wake.wait(min(self.retry_interval, self.interval) if self._owed else self.interval)
            self._wake.clear()
        if stop.is_set():
            # A prompt made just before stopping (`once` stops right after its run) is still sent, once.
            return self._prompted
        return True

    def run(self, stop: threading.Event) -> None:
        """The heartbeat thread: send, wait, until `stop` is set (then `wake()` it)."""
        while True:
            self.send()
            if not self.wait(stop):
                return
