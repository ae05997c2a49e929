"""The pinned registry keys (`OPENTRACE_REGISTRY_KEYS`, SPEC §3): `keyid:base64,keyid:base64`.

The backend's and the agent's configuration loaders both call `parse_registry_keys()` and
wrap its `KeysError` in their own configuration error, which names the variable.
"""

from __future__ import annotations

import base64
import binascii
import re

# A keyid as it may appear in the variable and in a signed envelope's `signatures`.
KEYID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ED25519_PUBLIC_KEY_BYTES = 32


class KeysError(ValueError):
    """The keys variable is malformed; the message says which item and why."""


def parse_registry_keys(value: str | None) -> dict[str, bytes]:
    """`keyid:base64,...` → {keyid: 32-byte Ed25519 public key}; empty or unset → {}."""
    keys: dict[str, bytes] = {}
    for raw_item in (value or "").split(","):
        item = raw_item.strip()
        if not item:
            continue
        keyid, sep, encoded = item.partition(":")
        if not sep or not KEYID.match(keyid):
            raise KeysError(f"expected keyid:base64 pairs, got {item[:80]!r}")
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeysError(f"key {keyid!r} is not valid base64") from None
        if len(raw) != ED25519_PUBLIC_KEY_BYTES:
            raise KeysError(f"key {keyid!r} is not a 32-byte Ed25519 public key")
        if keyid in keys:
            raise KeysError(f"key id {keyid!r} appears twice")
        keys[keyid] = raw
    return keys
