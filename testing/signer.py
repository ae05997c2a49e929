"""The two HMAC signatures of SPEC §5 and §6, written from the SPEC for the tests and bench/.

Independent of `contract.signing` on purpose: the tests check both the backend and the agent
against this literal reading of the SPEC, so a mistake in the shared code cannot agree with
itself. One copy for every suite (the agent's fake backend, the agent API client, bench/).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any


def trigger_signature(secret: str, fields: dict[str, Any]) -> str:
    """SPEC §5: HMAC-SHA256 (hex) of the canonical JSON of every field but `signature`."""
    others = {k: v for k, v in fields.items() if k != "signature"}
    payload = json.dumps(others, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def request_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """SPEC §6: `sha256=` and the HMAC-SHA256 (hex) of `<timestamp>.<raw body>`."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def request_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of a signed agent request (SPEC §6), stamped now unless `timestamp` says."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-OpenTrace-Timestamp": stamp,
        "X-OpenTrace-Signature": request_signature(secret, stamp, body),
    }
