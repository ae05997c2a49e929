"""The durable outbox: every event is appended (and fsynced) here before anyone sends it.

One append-only JSON-lines file per run, `outbox/<created ns>-<run id>.jsonl`, and beside it
`<...>.acked` holding the highest seq the backend acknowledged. The seq of a new event is
the last one on disk plus one, so seqs are per run, start at 1, and a crash can neither
reuse a delivered seq nor skip one (a torn last line was never sent and is dropped).
Runs are delivered in the order they were created. A run whose events are all acknowledged
and whose terminal `run` event is among them is removed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from contract.events import TERMINAL_RUN_STATES
from contract.files import fsync_dir
from host_agent.fsutil import write_private


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
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(self.dir.glob("*.jsonl")):
            self._files[path.stem.split("-", 1)[1]] = path

    def _acked_path(self, path: Path) -> Path:
        return path.with_suffix(".acked")

    def _read(self, path: Path) -> list[dict[str, object]]:
        events: list[dict[str, object]] = []
        good = 0
        data = path.read_bytes()
        for line in data.splitlines(keepends=True):
            try:
                event = json.loads(line)
            except ValueError:
                break  # a torn write from a crash: never sent, so it is safe to drop
            if not line.endswith(b"\n"):
                break
            events.append(event)
            good += len(line)
        if good != len(data):
            with open(path, "r+b") as handle:
                handle.truncate(good)
                os.fsync(handle.fileno())
        return events

    def _run(self, run_id: str) -> RunOutbox | None:
        path = self._files.get(run_id)
        if path is None or not path.exists():
            return None
        try:
            acked = int(self._acked_path(path).read_text().strip() or 0)
        except FileNotFoundError:
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
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
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
            self.dead_dir.mkdir(exist_ok=True)
            dropped = [e for e in run.events if e["seq"] == seq]
            with open(self.dead_dir / f"{run.path.stem}.jsonl", "a", encoding="utf-8") as handle:
                for event in dropped:
                    handle.write(json.dumps({"event": event, "reason": reason}, ensure_ascii=False) + "\n")
            self.ack(run_id, seq)

    def _remove(self, run: RunOutbox) -> None:
        self._acked_path(run.path).unlink(missing_ok=True)
        run.path.unlink(missing_ok=True)
        self._files.pop(run.run_id, None)

    def pending_count(self) -> int:
        return sum(len(run.pending) for run in self.runs())
