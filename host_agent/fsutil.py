"""Durable JSON files of the agent's own state: the journal must survive a crash or a power cut.

The atomic write itself is `contract.files.write_atomic` (the backend writes the trigger
the same way).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from contract.files import write_atomic


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a file only the agent's user can read (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600)


def write_json(path: Path, value: object) -> None:
    write_private(path, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")


def read_json(path: Path, *, limit: int = 16 * 1024 * 1024) -> object | None:
    """The JSON in one of the agent's state files (None when absent or unreadable as JSON)."""
    raw = read_private(path, limit=limit)
    if raw is None:
        return None
    try:
        value: object = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value


def read_private(path: Path, *, limit: int) -> bytes | None:
    """A file of the agent's state, never through a link: None when absent; `OSError` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise OSError(f"{path} is not a regular file of at most {limit} bytes")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
