"""Re-reading the registry document a trigger carries (SPEC §4), to check the target is offered.

The backend already verified the document; the agent checks again because the trigger
crosses a trust boundary. With pinned keys the document must be a signed envelope whose
Ed25519 signature verifies with one of them, checked before the inner JSON is parsed.
Ed25519 comes from `cryptography` when the host has it; without it, pinned keys make the
agent refuse rather than skip the check.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from host_agent import safejson
from host_agent.clock import UTC
from host_agent.errors import SignatureUnavailable, TriggerRejected
from host_agent.versions import parse_version

PROJECT = "opentrace"


@dataclass(frozen=True)
class Release:
    version: str
    git_tag: str
    git_commit: str | None
    min_upgrade_from: str | None


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise SignatureUnavailable(
            "OPENTRACE_REGISTRY_KEYS is set but this host's Python has no 'cryptography' package "
            "to verify Ed25519 signatures; install python3-cryptography"
        ) from None
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise TriggerRejected(f"manifest: {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TriggerRejected(f"manifest: {what} is not valid base64") from None


def _verified_inner(envelope: object, keys: dict[str, bytes]) -> bytes:
    if not isinstance(envelope, dict) or set(envelope) != {"signed", "signatures"}:
        raise TriggerRejected("manifest: registry keys are pinned but the document is not a signed envelope")
    signed = _b64(envelope["signed"], "'signed'")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise TriggerRejected("manifest: the envelope carries no signatures")
    seen: set[str] = set()
    for entry in signatures:
        if not isinstance(entry, dict) or not isinstance(entry.get("keyid"), str):
            raise TriggerRejected("manifest: a signature entry is malformed")
        keyid = entry["keyid"]
        if keyid in seen:
            raise TriggerRejected(f"manifest: key id {keyid!r} signs twice")
        seen.add(keyid)
        if keyid not in keys:
            raise TriggerRejected(f"manifest: key id {keyid!r} is not pinned")
    for entry in signatures:
        if verify_ed25519(keys[entry["keyid"]], _b64(entry.get("sig"), "a signature"), signed):
            return signed
    raise TriggerRejected("manifest: no signature verifies with a pinned key")


def _release(entry: dict[str, object]) -> Release | None:
    version = entry.get("version")
    if not isinstance(version, str) or parse_version(version) is None:
        return None
    normal = version[1:] if version[:1] in "vV" else version
    tag = entry.get("git_tag")
    commit = entry.get("git_commit")
    minimum = entry.get("min_upgrade_from")
    return Release(
        version=normal,
        git_tag=tag if isinstance(tag, str) and tag else f"v{normal}",
        git_commit=commit if isinstance(commit, str) and commit else None,
        min_upgrade_from=minimum if isinstance(minimum, str) and minimum else None,
    )


def _signed_document(inner: bytes) -> object:
    try:
        return safejson.loads(inner)
    except safejson.UntrustedJSONError as exc:
        raise TriggerRejected(f"manifest: the signed document is not UTF-8 JSON ({exc})") from None


def releases(body: bytes, keys: dict[str, bytes], now: datetime | None = None) -> list[Release]:
    """The releases of `opentrace` the document offers; `TriggerRejected` when it is unacceptable."""
    try:
        document = safejson.loads(body)
    except safejson.UntrustedJSONError as exc:
        raise TriggerRejected(f"manifest: not UTF-8 JSON ({exc})") from None
    if keys:
        inner = _verified_inner(document, keys)
        document = _signed_document(inner)
    elif isinstance(document, dict) and "signed" in document and "signatures" in document:
        # Unsigned mode still understands an envelope; without keys its signature is not checked.
        document = _signed_document(_b64(document["signed"], "'signed'"))
    if not isinstance(document, dict):
        raise TriggerRejected("manifest: not a JSON object")
    if "releases" in document:
        if document.get("project") != PROJECT:
            raise TriggerRejected(f"manifest: project is {document.get('project')!r}, not {PROJECT!r}")
        expires = document.get("expires")
        if isinstance(expires, str):
            try:
                when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
            except ValueError:
                raise TriggerRejected("manifest: 'expires' is not an ISO 8601 time") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when < (now or datetime.now(UTC)):
                raise TriggerRejected(f"manifest: expired at {expires}")
        entries = document["releases"]
        if not isinstance(entries, list):
            raise TriggerRejected("manifest: 'releases' is not a list")
    elif keys:
        raise TriggerRejected("manifest: registry keys are pinned but the document has no releases")
    else:
        entry = (
            document.get("projects", {}).get(PROJECT) if isinstance(document.get("projects"), dict) else None
        )
        entry = entry or document.get(PROJECT) or document
        entries = [entry] if isinstance(entry, dict) else []
    found = [_release(e) for e in entries if isinstance(e, dict)]
    return [r for r in found if r is not None]
