"""Publisher side of the signed registry mode: key pairs and signed envelopes (SPEC §4.1 shape 4).

Used by `manage.py registry_keygen` and `manage.py sign_registry`; installs (the backend's
check and the agent) only ever verify, with `contract.registry`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class SigningError(Exception):
    pass


@dataclass(frozen=True)
class KeyPair:
    keyid: str
    private_pem: bytes
    public_raw: bytes

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    @property
    def pinned(self) -> str:
        """The `keyid:base64` item for OPENTRACE_REGISTRY_KEYS."""
        return f"{self.keyid}:{self.public_b64}"


def default_keyid(public_raw: bytes) -> str:
    return "k-" + hashlib.sha256(public_raw).hexdigest()[:16]


def _public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate(keyid: str | None = None) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw = _public_raw(key)
    return KeyPair(keyid or default_keyid(raw), pem, raw)


def write_private_key(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an Ed25519 key")
    return key


def sign_envelope(document: bytes, keys: list[tuple[str | None, Ed25519PrivateKey]]) -> bytes:
    """The signed envelope around `document`, which is signed byte for byte as given."""
    signatures = []
    for keyid, key in keys:
        keyid = keyid or default_keyid(_public_raw(key))
        signatures.append({"keyid": keyid, "sig": base64.b64encode(key.sign(document)).decode()})
    envelope = {"signed": base64.b64encode(document).decode(), "signatures": signatures}
    return json.dumps(envelope, indent=2).encode() + b"\n"
