"""HMAC-SHA256 with the shared agent secret: trigger signatures (SPEC §5) and requests (SPEC §6)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping


def canonical_json(fields: Mapping[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def trigger_signature(secret: str, fields: Mapping[str, object]) -> str:
    """Hex HMAC over every trigger field except `signature` itself."""
    payload = canonical_json({k: v for k, v in fields.items() if k != "signature"})
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def request_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def request_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-OpenTrace-Timestamp": str(timestamp),
        "X-OpenTrace-Signature": request_signature(secret, timestamp, body),
    }


def verify_equal(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
