"""The durable outbox: every event is appended (and fsynced) here before anyone sends it.

One append-only JSON-lines file per run, `outbox/<created ns>-<run id>.jsonl`, and beside it
`<...>.acked` holding the highest seq the backend acknowledged. The seq of a new event is
the last one on disk plus one, so seqs are per run, start at 1, and a crash can neither
reuse a delivered seq nor skip one (a torn last line was never sent and is dropped).
Runs are delivered in the order they were created. A run whose events are all acknowledged
and whose terminal `run` event is among them is removed.

The outbox lives in the agent's state dir; still, what is read back is checked like any
input (SPEC §5): a file name that is not `<digits>-<uuid>.jsonl` is ignored, an event that is
not the contract's shape (kind, step and state names, a seq in order) ends the valid part of
the file like a torn write, and every file is opened without following links.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from contract.events import EVENT_KINDS, RUN_STATES, STEP_NAMES, STEP_STATES, TERMINAL_RUN_STATES
from contract.files import fsync_dir
from host_agent.fsutil import read_private, write_private
from host_agent.state import private_subdir

_FILE = re.compile(r"[0-9]{20}-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl")
_MAX_FILE = 64 * 1024 * 1024
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def valid_event(event: object, seq: int) -> bool:
    """An event as `Reporter.event()` writes it, with the seq that must come next."""
    if not isinstance(event, dict) or event.get("seq") != seq or event.get("kind") not in EVENT_KINDS:
        return False
    if not isinstance(event.get("at"), str):
        return False
    kind, step, state = event["kind"], event.get("step"), event.get("state")
    if step is not None and step not in STEP_NAMES:
        return False
    if kind == "step" and (step is None or state not in STEP_STATES):
        return False
    if kind == "run" and state not in RUN_STATES:
        return False
    if kind == "log" and (
        state is not None
        or not isinstance(event.get("lines"), list)
        or not all(isinstance(line, str) for line in event["lines"])
    ):
        return False
    message = event.get("message")
    return message is None or isinstance(message, str)


@dataclass
class RunOutbox:
    run_id: str
    path: Path
    events: list[dict[str, object]]
    acked: int

    @property
    def pending(self) -> list[dict[str, object]]:
        return [e for e in self.events if int(e["seq"]) > self.acked]  # type: ignore[call-overload]  # seq is an int: the outbox writes it

    @property
    def complete(self) -> bool:
        return any(e.get("kind") == "run" and e.get("state") in TERMINAL_RUN_STATES for e in self.events)


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dead_dir = directory / "dead"
        self._lock = threading.RLock()
        self._files: dict[str, Path] = {}
        private_subdir(self.dir)
        for path in sorted(self.dir.glob("*.jsonl")):
            match = _FILE.fullmatch(path.name)
            if match:
                self._files[match.group(1)] = path

    def _acked_path(self, path: Path) -> Path:
        return path.with_suffix(".acked")

    def _read(self, path: Path) -> list[dict[str, object]]:
        events: list[dict[str, object]] = []
        good = 0
        data = read_private(path, limit=_MAX_FILE) or b""
        for line in data.splitlines(keepends=True):
            try:
                event = json.loads(line)
            except ValueError:
                break  # a torn write from a crash: never sent, so it is safe to drop
            if not line.endswith(b"\n") or not valid_event(event, len(events) + 1):
                break
            events.append(event)
            good += len(line)
        if good != len(data):
            fd = os.open(path, os.O_WRONLY | _NOFOLLOW)
            try:
                os.ftruncate(fd, good)
                os.fsync(fd)
            finally:
                os.close(fd)
        return events

    def _run(self, run_id: str) -> RunOutbox | None:
        path = self._files.get(run_id)
        if path is None or not path.exists():
            return None
        try:
            text = (read_private(self._acked_path(path), limit=64) or b"0").decode("ascii").strip()
            acked = int(text or 0) if text.isdigit() else 0
        except (OSError, UnicodeDecodeError):
            acked = 0
        return RunOutbox(run_id, path, self._read(path), acked)

    def append(self, run_id: str, event: dict[str, object]) -> int:
        """Give `event` the run's next seq, write it durably, and return the seq."""
        with self._lock:
            path = self._files.get(run_id)
            if path is None:
                path = self.dir / f"{time.time_ns():020d}-{run_id}.jsonl"
                self._files[run_id] = path
                seq = 1
            else:
                existing = self._run(run_id)
                seq = (int(existing.events[-1]["seq"]) + 1) if existing and existing.events else 1  # type: ignore[call-overload]  # seq is an int: the outbox writes it
            record = {**event, "seq": seq}
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
            try:
                os.write(fd, json.dumps(record, ensure_ascii=False, sort_keys=True).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            if seq == 1:
                fsync_dir(self.dir)
            return seq

    def runs(self) -> list[RunOutbox]:
        """Runs with something left to deliver, oldest first."""
        with self._lock:
            result = []
            for run_id in sorted(self._files, key=lambda r: self._files[r].name):
                run = self._run(run_id)
                if run is not None:
                    result.append(run)
            return result

    def ack(self, run_id: str, seq: int) -> None:
        with self._lock:
            run = self._run(run_id)
            if run is None or seq <= run.acked:
                return
            write_private(self._acked_path(run.path), f"{seq}\n".encode())
            run.acked = seq
            if run.complete and not run.pending:
                self._remove(run)

    def rewind(self, run_id: str) -> None:
        """Send the run's events again from seq 1 (the backend acknowledges what it already has).

        Needed after the database was restored from a backup taken mid-run: the events the
        backend stored after the backup are gone from it, though it had acknowledged them.
        """
        with self._lock:
            run = self._run(run_id)
            if run is not None:
                write_private(self._acked_path(run.path), b"0\n")

    def drop(self, run_id: str, seq: int, reason: str) -> None:
        """The backend refused an event for good: keep it in `dead/` for the operator, move on."""
        with self._lock:
            run = self._run(run_id)
            if run is None:
                return
            private_subdir(self.dead_dir)
            dropped = [e for e in run.events if e["seq"] == seq]
            dead = self.dead_dir / f"{run.path.stem}.jsonl"
            fd = os.open(dead, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
            try:
                for event in dropped:
                    line = json.dumps({"event": event, "reason": reason[:2000]}, ensure_ascii=False) + "\n"
                    os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.ack(run_id, seq)

    def _remove(self, run: RunOutbox) -> None:
        self._acked_path(run.path).unlink(missing_ok=True)
        run.path.unlink(missing_ok=True)
        self._files.pop(run.run_id, None)

    def pending_count(self) -> int:
        return sum(len(run.pending) for run in self.runs())
