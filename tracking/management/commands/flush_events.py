"""`manage.py flush_events`: the one writer of tracked events into ClickHouse (docs/tracking.md).

Without options it runs until SIGTERM/SIGINT: a step (`Flusher.run_once()`) every
`OPENTRACE_TRACKING_FLUSH_INTERVAL` seconds, at once again while there is more to write,
with growing pauses while ClickHouse or the buffer is unavailable. `--once` drains what is
buffered now and exits: 0 when the buffer is empty, 1 when it could not be emptied within
`--timeout` seconds (held by an update, ClickHouse busy). When a flusher is already running
(`make run`, the compose service), `--once` does not write: it waits until that one has
emptied the buffer (so under continuous traffic it times out). Its state goes to
`<DATA_DIR>/tracking/flusher.json` after every step (the compose health check reads it).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from contract.files import write_atomic
from opentrace.clickhouse import client as clickhouse
from tracking.buffer import BufferUnavailable, get_buffer
from tracking.flusher import Backoff, Flusher, Outcome
from tracking.lock import WriterLock

logger = logging.getLogger("tracking.flusher")


class Command(BaseCommand):
    help = "Write buffered tracking events into ClickHouse (the one writer)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain the buffer once, then exit")
        parser.add_argument("--timeout", type=float, default=60.0, help="with --once: give up after this")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._stop)
        try:
            self._run(options)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _run(self, options: dict[str, Any]) -> None:
        lock = WriterLock(settings.OPENTRACE_TRACKING_DIR / "flusher.lock")
        if options["once"] and not lock.acquire(timeout=0):
            self._wait_for_the_running_flusher(options["timeout"])
            return
        if not options["once"] and not lock.acquire(timeout=None, should_stop=lambda: self.stopping):
            return  # asked to stop while another flusher held the lock
        try:
            if options["once"]:
                self._once(options["timeout"])
            else:
                self._loop()
        finally:
            lock.release()

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _wait_for_the_running_flusher(self, timeout: float) -> None:
        """`--once` while the loop runs (`make run`, the compose service): it is the writer, so
        wait until it has emptied the buffer."""
        deadline = time.monotonic() + timeout
        buffer = get_buffer()
        while not self.stopping:
            try:
                left = buffer.backlog()
            except BufferUnavailable:
                left = None
            if left == 0:
                self.stdout.write("the running flusher has emptied the buffer")
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"the running flusher has not emptied the buffer within {timeout:.0f} s "
                    f"({left} still buffered); its state: {self._last_status()}"
                )
            time.sleep(0.5)

    @staticmethod
    def _last_status() -> str:
        try:
            data = json.loads((settings.OPENTRACE_TRACKING_DIR / "flusher.json").read_text())
        except (OSError, ValueError):
            return "unknown (no status file)"
        return (
            f"{data.get('state')}: {data.get('detail') or '-'} (pid {data.get('pid')}, at {data.get('at')})"
        )

    def _once(self, timeout: float) -> None:
        flusher = Flusher()
        deadline = time.monotonic() + timeout
        backoff = Backoff(ceiling=2.0)
        written = 0
        while not self.stopping:
            self._fresh_connection()
            outcome = flusher.run_once()
            self._status(outcome, flusher)
            if outcome.state == "flushed":
                written += outcome.events
                backoff.succeeded()
                continue
            if outcome.state == "idle":
                self.stdout.write(f"flushed {written} event(s); the buffer is empty")
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"flushed {written} event(s), then gave up: {outcome.state}: {outcome.detail}"
                )
            time.sleep(backoff.failed())

    def _loop(self) -> None:
        flusher = Flusher()
        backoff = Backoff()
        interval = settings.OPENTRACE_TRACKING_FLUSH_INTERVAL
        last_state = ""
        logger.info("flushing tracked events every %.1f s", interval)
        while not self.stopping:
            self._fresh_connection()
            outcome = flusher.run_once()
            self._status(outcome, flusher)
            if outcome.state != last_state and outcome.state not in {"idle", "flushed"}:
                logger.warning("flusher %s: %s", outcome.state, outcome.detail)
            elif outcome.state != last_state and last_state not in {"", "idle", "flushed"}:
                logger.info("flusher resumed: %s", outcome.state)
            last_state = outcome.state
            if outcome.more:
                backoff.succeeded()
                # Between batches the embedded engine is free for a moment for anyone waiting.
                pause = 0.2 if clickhouse.is_embedded() else 0.0
            elif outcome.state == "backoff":
                pause = backoff.failed()
            else:
                backoff.succeeded()
                pause = interval
            self._sleep(pause)

    @staticmethod
    def _fresh_connection() -> None:
        # A long-lived process must drop a connection the database closed (a restart, a
        # restore) or the hold would stay "unknown" forever. Inside a transaction (tests,
        # call_command in a transaction) the connection is the caller's.
        if not connection.in_atomic_block:
            close_old_connections()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _status(self, outcome: Outcome, flusher: Flusher) -> None:
        try:
            backlog: int | None = flusher.buffer.backlog()
        except BufferUnavailable:
            backlog = None
        status = {
            "pid": os.getpid(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "state": outcome.state,
            "detail": outcome.detail,
            "events": outcome.events,
            "backlog": backlog,
        }
        try:
            write_atomic(
                settings.OPENTRACE_TRACKING_DIR / "flusher.json", json.dumps(status).encode(), mode=0o600
            )
        except OSError:
            logger.warning("cannot write the flusher status file", exc_info=True)
