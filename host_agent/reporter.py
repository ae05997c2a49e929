"""The agent's reporter: events go to the outbox first, then to the backend, in order.

`event()` only writes to disk, so reporting never blocks or fails an update. A background
thread delivers (`deliver_once()`), backing off exponentially with jitter while the backend
is away (it is, during `deploy`). `flush()` tries harder for a bounded time, for `once`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from host_agent.backend import EVENTS_PATH, BackendClient
from host_agent.clock import UTC
from host_agent.errors import DeliveryError
from host_agent.outbox import Outbox

logger = logging.getLogger("host_agent.reporter")
BATCH = 100
MAX_BACKOFF = 15.0


def utc_now_iso(now: Callable[[], datetime]) -> str:
    return now().astimezone(UTC).isoformat().replace("+00:00", "Z")


class Reporter:
    def __init__(
        self,
        outbox: Outbox,
        client: BackendClient,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.now = now
        self.last_error: str | None = None
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- writing ---------------------------------------------------------------------
    def event(
        self,
        run_id: str,
        kind: str,
        *,
        step: str | None = None,
        state: str | None = None,
        message: str | None = None,
        lines: list[str] | None = None,
    ) -> int:
        event: dict[str, object] = {"kind": kind, "at": utc_now_iso(self.now)}
        if step is not None:
            event["step"] = step
        if state is not None:
            event["state"] = state
        if message is not None:
            event["message"] = message[:4000]
        if lines is not None:
            event["lines"] = [line[:2000] for line in lines]
        seq = self.outbox.append(run_id, event)
        logger.info("run %s #%d %s %s %s %s", run_id[:8], seq, kind, step or "", state or "", message or "")
        self._wake.set()
        return seq

    def log(self, run_id: str, step: str, lines: list[str]) -> None:
        for start in range(0, len(lines), 200):
            self.event(run_id, "log", step=step, lines=lines[start : start + 200])

    @contextmanager
    def replaying(self, run_id: str) -> Iterator[None]:
        """Hold delivery while the backend's database is restored, then send the run again from seq 1.

        Events the backend stored after the backup are gone from it although it acknowledged
        them; nothing may be delivered between the restore and the rewind.
        """
        with self._send_lock:
            yield
            self.outbox.rewind(run_id)
        self._wake.set()

    # --- delivering ------------------------------------------------------------------
    def deliver_once(self) -> bool:
        """Send what is pending, oldest first. True when nothing is left; False on a transient error."""
        with self._send_lock:
            for run in self.outbox.runs():
                pending = run.pending
                while pending:
                    batch = pending[:BATCH]
                    try:
                        self.client.post(EVENTS_PATH, {"run_id": run.run_id, "events": batch})
                    except DeliveryError as exc:
                        if not exc.permanent:
                            if self.last_error is None:
                                logger.warning("reports wait in the outbox: %s", exc)
                            self.last_error = str(exc)
                            return False
                        if len(batch) > 1:
                            # Find the one event the backend refuses; the others still go through.
                            pending = pending[:1]
                            continue
                        logger.warning(
                            "backend refused event %s of run %s: %s", batch[0]["seq"], run.run_id, exc
                        )
                        self.outbox.drop(run.run_id, int(batch[0]["seq"]), str(exc))  # type: ignore[call-overload]  # seq is an int: the outbox writes it
                    else:
                        self.outbox.ack(run.run_id, int(batch[-1]["seq"]))  # type: ignore[call-overload]  # seq is an int: the outbox writes it
                    self.last_error = None
                    run = next((r for r in self.outbox.runs() if r.run_id == run.run_id), None)  # type: ignore[assignment]  # None ends the loop
                    pending = run.pending if run is not None else []
            return True

    def flush(self, timeout: float, *, sleep: Callable[[float], None] = time.sleep) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.deliver_once():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sleep(min(0.5, remaining))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                delivered = self.deliver_once()
            except Exception:  # the thread must survive anything; the outbox keeps the events
                logger.exception("delivering reports failed")
                delivered = False
            if delivered:
                backoff = 0.5
                self._wake.wait()
            else:
                self._wake.wait(random.uniform(0, backoff))  # full jitter
                backoff = min(backoff * 2, MAX_BACKOFF)
            self._wake.clear()
