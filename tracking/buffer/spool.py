"""The spool: accepted records in append-only files under `<DATA_DIR>/tracking/spool/`.

Writers (every web process) and the one reader (the flusher) share the directory:

- Each process appends to a segment of its own, `<ns>-<pid>-<random>.open`, opened with
  `O_APPEND` and held under an exclusive `flock` for as long as the process writes to it. A
  record is one line, `<crc32 hex> <payload>\\n`, written with a single `write()` and
  `fdatasync`ed before `append()` returns. A failed or short write is truncated away before
  anyone else writes, so a segment never holds a torn record followed by a good one.
- A segment is rotated (renamed `.seg`, closed) after `SEGMENT_BYTES` or `SEGMENT_SECONDS`;
  a `.open` segment whose lock can be taken belongs to a process that died, and the reader
  seals it. New segments are created as `.new`, locked, then renamed, so the reader never
  mistakes a segment being born for an orphan.
- The reader keeps `checkpoint.json` (written atomically): how far it has flushed each
  segment, and whether the batch after that point may already be in ClickHouse (`suspect`).
  It reads live `.open` segments too, up to their last complete record, so an idle web
  process's events are not stuck until it rotates; it deletes a segment once it is sealed
  and flushed to the end.

Nothing here is kept in memory between requests: a process killed after its 200 leaves its
records on disk for the reader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contract.files import fsync_dir, write_atomic
from tracking.buffer import Batch, BufferUnavailable
from tracking.records import CorruptRecord, decode

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
SEGMENT_SECONDS = 60.0
CHECKPOINT = "checkpoint.json"
_NAME = re.compile(r"^(\d{20}-\d+-[0-9a-f]{8})\.(open|seg|new)$")


def frame(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def unframe(line: bytes) -> bytes | None:
    """The payload of a complete line (without its newline), or None when it is damaged."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:]
    try:
        expected = int(line[:8], 16)
    except ValueError:
        return None
    return payload if zlib.crc32(payload) == expected else None


# --- writing -----------------------------------------------------------------------------
@dataclass(eq=False)
class _Segment:
    stem: str
    fd: int
    created: float
    size: int = 0
    users: int = 0  # appends between their write and their fdatasync
    retired: bool = False
    closed: bool = False

    def close_if_idle(self) -> None:
        if self.retired and self.users == 0 and not self.closed:
            self.closed = True
            os.close(self.fd)  # releases the flock: the reader may now seal it


class SpoolWriter:
    """This process's appends; thread-safe (runserver is threaded), fork-aware (gunicorn)."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        segment_seconds: float = SEGMENT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._current: _Segment | None = None
        self._pid = os.getpid()

    def append(self, payload: bytes) -> None:
        line = frame(payload)
        with self._lock:
            segment = self._segment_for(len(line))
            start = segment.size
            try:
                written = os.write(segment.fd, line)
            except OSError as exc:
                self._undo(segment, start)
                raise BufferUnavailable(f"cannot write to the spool: {exc}") from exc
            if written != len(line):
                self._undo(segment, start)
                raise BufferUnavailable("cannot write to the spool: short write (disk full?)")
            segment.size += written
            segment.users += 1
        # Outside the lock: appends that wrote meanwhile share this fdatasync (group commit).
        try:
            os.fdatasync(segment.fd)
        except OSError as exc:
            with self._lock:
                self._retire(segment)  # after a failed sync, nothing more goes into this file
            raise BufferUnavailable(f"cannot sync the spool: {exc}") from exc
        finally:
            with self._lock:
                segment.users -= 1
                segment.close_if_idle()

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._retire(self._current)
                self._current = None

    def _segment_for(self, length: int) -> _Segment:
        if self._pid != os.getpid():
            # A forked child shares the parent's descriptor and lock: leave them to the parent.
            self._pid = os.getpid()
            self._current = None
        current = self._current
        if current is not None and not current.retired:
            too_big = current.size > 0 and current.size + length > self.segment_bytes
            too_old = self.clock() - current.created >= self.segment_seconds
            if not (too_big or too_old):
                return current
            self._retire(current)
        self._current = self._open_segment()
        return self._current

    def _open_segment(self) -> _Segment:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            stem = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
            born = self.directory / f"{stem}.new"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(born, flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(born, self.directory / f"{stem}.open")
                fsync_dir(self.directory)  # the name must survive a crash as well as the bytes
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    born.unlink()
                raise
        except OSError as exc:
            raise BufferUnavailable(f"cannot create a spool segment in {self.directory}: {exc}") from exc
        return _Segment(stem=stem, fd=fd, created=self.clock())

    def _retire(self, segment: _Segment) -> None:
        if segment.retired:
            return
        segment.retired = True
        if self._current is segment:
            self._current = None
        try:
            os.rename(self.directory / f"{segment.stem}.open", self.directory / f"{segment.stem}.seg")
        except OSError:
            logger.warning("could not seal spool segment %s; the reader will", segment.stem, exc_info=True)
        segment.close_if_idle()

    def _undo(self, segment: _Segment, size: int) -> None:
        """Cut a failed append back off, and stop using the segment."""
        try:
            os.ftruncate(segment.fd, size)
        except OSError:
            logger.error("could not truncate spool segment %s after a failed write", segment.stem)
        self._retire(segment)


# --- reading (the flusher) ----------------------------------------------------------------------
@dataclass
class _Checkpoint:
    offsets: dict[str, int] = field(default_factory=dict)
    # Per segment, the end of what a flush may have inserted without committing: records
    # before it are looked up in ClickHouse before they are inserted again.
    suspect: dict[str, int] = field(default_factory=dict)
    unreadable: bool = False  # lost: everything is re-read, all of it suspect


@dataclass
class _Position:
    offsets: dict[str, int]
    finished: list[str]  # sealed segments read to their end: deleted on commit


class SpoolReader:
    """The flusher's side of the spool. One reader at a time (the flusher's lock)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- checkpoint
    def _load(self) -> _Checkpoint:
        try:
            data = json.loads((self.directory / CHECKPOINT).read_bytes())
        except FileNotFoundError:
            return _Checkpoint()
        except (OSError, ValueError) as exc:
            # Without it everything is read again: safe, since all of it is then suspect.
            logger.error("spool checkpoint unreadable (%s); re-reading the spool as suspect", exc)
            return _Checkpoint(unreadable=True)
        if not isinstance(data, dict):
            return _Checkpoint(unreadable=True)
        return _Checkpoint(offsets=_offsets(data.get("offsets")), suspect=_offsets(data.get("suspect")))

    def _save(self, checkpoint: _Checkpoint) -> None:
        data = json.dumps({"offsets": checkpoint.offsets, "suspect": checkpoint.suspect}, sort_keys=True)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.directory / CHECKPOINT, data.encode(), mode=0o600)
        except OSError as exc:
            raise BufferUnavailable(f"cannot write the spool checkpoint: {exc}") from exc

    # -- segments
    def segments(self, *, tidy: bool = True) -> list[tuple[str, str]]:
        """(stem, state) of every segment, oldest first; with `tidy` (the writer lock's holder
        only) orphans are sealed and stale births removed."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BufferUnavailable(f"cannot list the spool: {exc}") from exc
        found = []
        for name in names:
            match = _NAME.match(name)
            if match is None:
                continue
            stem, state = match.groups()
            if state == "new":
                if tidy:
                    self._remove_stale_birth(stem)
                continue
            if tidy and state == "open" and self._seal_orphan(stem):
                state = "seg"
            found.append((stem, state))
        return sorted(found)

    def _try_lock(self, path: Path) -> int | None:
        """An fd holding the exclusive lock of `path`, or None while a writer holds it."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                logger.warning("cannot lock %s: %s", path, exc)
            return None
        return fd

    def _seal_orphan(self, stem: str) -> bool:
        path = self.directory / f"{stem}.open"
        fd = self._try_lock(path)
        if fd is None:
            return False
        try:
            os.rename(path, self.directory / f"{stem}.seg")
            logger.info("sealed spool segment %s of a writer that is gone", stem)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def _remove_stale_birth(self, stem: str) -> None:
        # A writer locks its `.new` file before anything else; an unlocked one never got a record.
        path = self.directory / f"{stem}.new"
        fd = self._try_lock(path)
        if fd is None:
            return
        try:
            if os.fstat(fd).st_size == 0:
                path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)

    # -- the protocol
    def read(self, max_events: int) -> Batch | None:
        checkpoint = self._load()
        segments = self.segments()
        present = {stem for stem, _ in segments}
        if checkpoint.unreadable:
            checkpoint.suspect = dict.fromkeys(present, 2**62)
        offsets = {stem: off for stem, off in checkpoint.offsets.items() if stem in present}
        batch = Batch(records=[], events=0, suspect=False)
        finished: list[str] = []
        for stem, state in segments:
            if batch.events >= max_events:
                break
            sealed = state == "seg"
            path = self.directory / f"{stem}.{state}"
            start = offsets.get(stem, 0)
            end = self._read_segment(path, start, sealed, batch, max_events)
            if end != start:
                offsets[stem] = end
                if start < checkpoint.suspect.get(stem, 0):
                    batch.suspect = True
            if sealed and end >= _size(path):
                finished.append(stem)
        stale = set(checkpoint.offsets) - present
        if not batch.records and not batch.corrupt and not finished and not stale:
            return None
        batch.position = _Position(offsets=offsets, finished=finished)
        return batch

    def _read_segment(self, path: Path, start: int, sealed: bool, batch: Batch, max_events: int) -> int:
        """Add the records of `path` after `start` to `batch`; the offset read up to.

        A segment is at most SEGMENT_BYTES plus one record, so the rest of it is read at once.
        """
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read()
        except FileNotFoundError:
            return start  # sealed (renamed) or deleted meanwhile: the next read finds it
        except OSError as exc:
            raise BufferUnavailable(f"cannot read spool segment {path.name}: {exc}") from exc
        position = 0
        while batch.events < max_events:
            newline = data.find(b"\n", position)
            if newline < 0:
                if sealed and position < len(data):
                    # The unterminated tail of a sealed segment: a write torn by a crash,
                    # never acknowledged. Its bytes are kept aside all the same.
                    logger.warning("spool segment %s ends with an incomplete record", path.name)
                    batch.corrupt.append(data[position:])
                    position = len(data)
                break
            line = data[position:newline]
            payload = unframe(line)
            if payload is None:
                if not sealed and newline + 1 == len(data):
                    break  # the newest line of a live segment: look again next time
                # The writer truncates failed writes, so this was never acknowledged.
                logger.error("spool segment %s: damaged record at %d", path.name, start + position)
                batch.corrupt.append(line)
            else:
                try:
                    record = decode(payload)
                except CorruptRecord as exc:
                    logger.error("spool segment %s at %d: %s", path.name, start + position, exc)
                    batch.corrupt.append(payload)
                else:
                    batch.records.append(record)
                    batch.events += len(record.events)
            position = newline + 1
        return start + position

    def mark_suspect(self, batch: Batch) -> None:
        position = batch.position
        assert isinstance(position, _Position)
        checkpoint = self._load()
        if checkpoint.unreadable:
            checkpoint = _Checkpoint(suspect={stem: 2**62 for stem, _ in self.segments()})
        for stem, end in position.offsets.items():
            if end > checkpoint.offsets.get(stem, 0):
                checkpoint.suspect[stem] = max(end, checkpoint.suspect.get(stem, 0))
        self._save(checkpoint)

    def commit(self, batch: Batch) -> None:
        position = batch.position
        assert isinstance(position, _Position)
        previous = self._load()
        if previous.unreadable:
            previous.suspect = dict.fromkeys(position.offsets, 2**62)
        offsets = position.offsets
        # What lies beyond the new offsets but was inserted by an earlier, uncommitted flush
        # stays suspect until it is read again.
        suspect = {
            stem: end for stem, end in previous.suspect.items() if stem in offsets and end > offsets[stem]
        }
        self._save(_Checkpoint(offsets=offsets, suspect=suspect))
        for stem in position.finished:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{stem}.seg").unlink()

    def backlog(self) -> int:
        checkpoint = self._load()
        total = 0
        for stem, state in self.segments(tidy=False):
            # A live segment may be sealed (renamed) between the listing and this look.
            size = _size(self.directory / f"{stem}.{state}") or _size(self.directory / f"{stem}.seg")
            total += max(0, size - checkpoint.offsets.get(stem, 0))
        return total


def _offsets(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Spool:
    """The spool as a `Buffer`: this process's writer (made on first use) and the reader."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writer = SpoolWriter(directory)
        self.reader = SpoolReader(directory)

    def append(self, payload: bytes) -> None:
        self.writer.append(payload)

    def read(self, max_events: int) -> Batch | None:
        return self.reader.read(max_events)

    def mark_suspect(self, batch: Batch) -> None:
        self.reader.mark_suspect(batch)

    def commit(self, batch: Batch) -> None:
        self.reader.commit(batch)

    def backlog(self) -> int:
        return self.reader.backlog()
