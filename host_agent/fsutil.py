"""Durable JSON files of the agent's own state: the journal must survive a crash or a power cut.

The atomic write itself is `contract.files.write_atomic` (the backend writes the trigger
the same way).
"""

from __future__ import annotations

import json
from pathlib import Path

from contract.files import write_atomic


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a file only the agent's user can read (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600)


def write_json(path: Path, value: object) -> None:
    write_private(path, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> object | None:
    try:
        value: object = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return value
