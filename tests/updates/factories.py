"""Building runs the way the install view does."""

from __future__ import annotations

import uuid
from typing import Any

from updates.models import UpdateRun


def make_run(**overrides: Any) -> UpdateRun:
    """A requested run as the install view would create it (trigger written on commit)."""
    values = {
        "user": None,
        "from_version": "1.1.5",
        "to_version": "1.2.0",
        "git_tag": "v1.2.0",
        "git_commit": None,
        "severity": "normal",
        "manifest": b'{"version": "1.2.0"}',
        "manifest_verified": False,
        "idempotency_key": uuid.uuid4().hex,
    }
    values.update(overrides)
    run, created = UpdateRun.request(**values)
    assert created
    return run
