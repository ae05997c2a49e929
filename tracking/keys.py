"""Write key → project id, cheaply: a per-process cache in front of the unique index.

Every tracking request needs this answer, so each process keeps what the database said for
`OPENTRACE_TRACKING_KEY_TTL` seconds (unknown keys included, so a flood of wrong keys costs
one indexed query per key and TTL). A rotated or disabled key is therefore refused within
that many seconds everywhere.

When the database cannot be asked (it restarts, or a restore holds it), a key this process
has seen keeps its last answer — events wait in the buffer, not in the database — and a key
it has never seen is `KeysUnavailable` (503, retry) rather than a 401 an SDK would take as
final.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError

from tracking.models import Project

HEADER = "X-OpenTrace-Key"
MAX_KEY_LENGTH = 64
MAX_CACHED = 10_000


class KeysUnavailable(Exception):
    """The key is not cached and the database cannot be asked."""


# key -> (project id or None for refused, monotonic time the answer expires)
_cache: dict[str, tuple[int | None, float]] = {}


def clear_cache() -> None:
    _cache.clear()


def ttl() -> float:
    return float(settings.OPENTRACE_TRACKING_KEY_TTL)


def _lookup(key: str) -> int | None:
    row = Project.objects.filter(write_key=key).values_list("pk", "enabled").first()
    if row is None or not row[1]:
        return None
    return int(row[0])


def project_for_key(key: str | None, *, clock: Callable[[], float] = time.monotonic) -> int | None:
    """The enabled project `key` belongs to, or None (unknown, disabled, or not a key)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    now = clock()
    cached = _cache.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    try:
        project_id = _lookup(key)
    except DatabaseError as exc:
        if cached is not None:
            return cached[0]  # stale, but the database cannot say otherwise right now
        raise KeysUnavailable(str(exc)) from exc
    if len(_cache) >= MAX_CACHED:
        _cache.clear()  # bounded: random keys must not grow the cache without end
    _cache[key] = (project_id, now + ttl())
    return project_id
