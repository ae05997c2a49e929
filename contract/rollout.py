"""Staged rollout (SPEC §4.1 `rollout`): which installs a release is offered to.

Each install has an id generated once (the backend keeps it in its registry state); its
bucket is a number 0-99 derived from that id alone, so it never changes across restarts
and a release with `rollout: 25` reaches the installs in buckets 0-24 — about a quarter of
them, and always the same quarter, so raising the percentage only ever adds installs.
"""

from __future__ import annotations

import hashlib

BUCKETS = 100


def bucket(install_id: str) -> int:
    """This install's bucket, 0-99: the first 8 bytes of SHA-256 of its id, modulo 100."""
    digest = hashlib.sha256(f"opentrace-rollout:{install_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(rollout: int, install_bucket: int | None) -> bool:
    """True when a release rolled out to `rollout` % of installs reaches this bucket."""
    if rollout >= BUCKETS:
        return True
    if rollout <= 0:
        return False
    return install_bucket is None or install_bucket < rollout
