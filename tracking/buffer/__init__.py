"""The durable buffer accepted events wait in until the writer has them in ClickHouse.

Two implementations of one small protocol, chosen by `OPENTRACE_TRACKING_BUFFER`:
`spool` (append-only files in `<DATA_DIR>/tracking/spool`, the embedded/local default) and a
`redis://` URL (a Redis list, production). Both promise:

- `append(payload)` returns only once the record is durable (fsynced) — the endpoint
  acknowledges after it — or raises `BufferUnavailable`;
- the single writer reads the oldest records with `read()`, calls `mark_suspect(batch)`
  before it inserts them, and `commit(batch)` once they are in ClickHouse; only `commit()`
  removes records;
- a batch holding records that an uncommitted `mark_suspect()` covered (the writer crashed,
  or kept the batch on purpose, see `tracking.flusher`) comes back with `suspect=True`: some
  of its events may already be in ClickHouse, so the writer skips those it finds there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from tracking.records import Record


class BufferUnavailable(Exception):
    """The buffer cannot take or give records right now (disk full, Redis down); retry later."""

    permanent = False


@dataclass
class Batch:
    records: list[Record]
    events: int
    suspect: bool
    # Records that could not be decoded: kept aside (tracking.quarantine), never dropped.
    corrupt: list[bytes] = field(default_factory=list)
    # What `commit()` needs to remove exactly this batch; each buffer decides its shape.
    position: object = None


class Buffer(Protocol):
    def append(self, payload: bytes) -> None: ...

    def read(self, max_events: int) -> Batch | None: ...

    def mark_suspect(self, batch: Batch) -> None: ...

    def commit(self, batch: Batch) -> None: ...

    def backlog(self) -> int:
        """Roughly how much waits (bytes for the spool, records for Redis); for status output."""
        ...


_buffer: Buffer | None = None
_configured: tuple[str, str, str] | None = None


def get_buffer() -> Buffer:
    """The configured buffer, one per process (rebuilt when the settings change, as in tests)."""
    global _buffer, _configured
    key = (
        settings.OPENTRACE_TRACKING_BUFFER,
        str(settings.OPENTRACE_TRACKING_DIR),
        settings.OPENTRACE_TRACKING_REDIS_KEY_PREFIX,
    )
    if _buffer is None or _configured != key:
        if settings.OPENTRACE_TRACKING_BUFFER == "spool":
            from tracking.buffer.spool import Spool

            _buffer = Spool(settings.OPENTRACE_TRACKING_DIR / "spool")
        else:
            from tracking.buffer.redis import RedisBuffer

            _buffer = RedisBuffer(
                settings.OPENTRACE_TRACKING_BUFFER, key_prefix=settings.OPENTRACE_TRACKING_REDIS_KEY_PREFIX
            )
        _configured = key
    return _buffer
