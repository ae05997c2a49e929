"""The running version: the file `VERSION` at the repository root is its one source."""

from __future__ import annotations

from functools import cache
from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"


@cache
def running_version() -> str:
    return VERSION_FILE.read_text(encoding="utf-8").strip()
