"""Time helpers. The agent runs on the host's own Python, which may be 3.10 (no `datetime.UTC`)."""

from __future__ import annotations

from datetime import datetime, timezone

UTC = timezone.utc  # noqa: UP017 - datetime.UTC needs Python 3.11; hosts may have 3.10


def utc_now() -> datetime:
    return datetime.now(UTC)
