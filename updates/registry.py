"""The registry boundary for the backend: `contract.fetch`, which the host agent shares (SPEC §4.3)."""

from __future__ import annotations

from contract.fetch import (
    CONNECT_TIMEOUT,
    DEADLINE,
    MAX_REDIRECTS,
    MAX_RETRY_AFTER,
    READ_TIMEOUT,
    USER_AGENT,
    FetchResult,
    _check_url,
    backoff_delay,
    fetch,
    parse_retry_after,
)
from contract.registry import RegistryError

__all__ = [
    "CONNECT_TIMEOUT",
    "DEADLINE",
    "MAX_REDIRECTS",
    "MAX_RETRY_AFTER",
    "READ_TIMEOUT",
    "USER_AGENT",
    "FetchResult",
    "RegistryError",
    "_check_url",
    "backoff_delay",
    "fetch",
    "parse_retry_after",
]
