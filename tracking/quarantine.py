"""Where the flusher puts buffered bytes it cannot decode: kept for a person, never dropped.

Nothing the endpoint acknowledged should ever land here (records are validated before they
are buffered and checksummed in the spool); a torn record a crash left behind, or a record
written by a newer release that was rolled back, can. Each goes on one line of
`<DATA_DIR>/tracking/rejected/<UTC date>.txt`, base64-encoded, fsynced before the buffer
forgets it.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

from tracking.buffer import BufferUnavailable


def keep(directory: Path, items: list[bytes]) -> Path | None:
    if not items:
        return None
    path = directory / f"{datetime.now(UTC):%Y-%m-%d}.txt"
    data = b"".join(base64.b64encode(item) + b"\n" for item in items)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BufferUnavailable(f"cannot keep undecodable records in {directory}: {exc}") from exc
    return path
