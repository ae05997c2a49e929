"""HMAC-SHA256 with the shared agent secret (`OPENTRACE_AGENT_SECRET`).

Two signatures: the trigger's (SPEC §5: hex HMAC over the canonical JSON of every field but
`signature`) and each agent request's (SPEC §6: `sha256=<hex>` over `"<timestamp>." + body`,
sent in `X-OpenTrace-Signature` with `X-OpenTrace-Timestamp`). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-OpenTrace-Timestamp"
SIGNATURE_HEADER = "X-OpenTrace-Signature"
MAX_SKEW_SECONDS = 300
_REQUEST_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class RequestRejected(Exception):
    """A request's signature or timestamp does not hold; the message says which."""


def canonical_json(fields: Mapping[str, object]) -> bytes:
    """The bytes a trigger signature covers (SPEC §5), for fields that are already JSON values."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def trigger_signature(secret: str, fields: Mapping[str, object]) -> str:
    """Hex HMAC over every trigger field except `signature` itself."""
    return _hmac(secret, canonical_json({k: v for k, v in fields.items() if k != "signature"}))


def equal(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures (text that is not ASCII never matches)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


def request_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    return "sha256=" + _hmac(secret, f"{timestamp}.".encode() + body)


def request_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of a signed agent request (content type included)."""
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: request_signature(secret, timestamp, body),
    }


def verify_request(secret: str, *, timestamp: str, signature: str, body: bytes, now: float) -> int:
    """The request's timestamp once its signature and clock skew hold; `RequestRejected` otherwise.

    `timestamp` and `signature` are the raw header values ("" when absent); `now` is the
    receiver's clock in Unix seconds. Checked before anything parses the body.
    """
    if not _TIMESTAMP.fullmatch(timestamp):
        raise RequestRejected(f"missing or malformed {TIMESTAMP_HEADER}")
    stamp = int(timestamp)
    if abs(now - stamp) > MAX_SKEW_SECONDS:
        raise RequestRejected(
            f"timestamp outside the allowed window (±{MAX_SKEW_SECONDS} s); check the clocks"
        )
    if not _REQUEST_SIGNATURE.fullmatch(signature):
        raise RequestRejected(f"missing or malformed {SIGNATURE_HEADER}")
    if not equal(request_signature(secret, timestamp, body), signature):
        raise RequestRejected("bad signature")
    return stamp
