"""Parsing and verifying a registry document: bytes in, a list of releases out.

This module is deliberately self-contained (standard library, `cryptography`, `packaging`;
no Django) so the host agent can vendor a copy and apply exactly the same rules to the
`manifest` it finds in a trigger file. See docs/registry.md for the format.

`parse_document()` is the one entry point. It never raises anything but `RegistryError`,
whatever bytes it is given.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.version import InvalidVersion, Version

PROJECT = "opentrace"
MAX_DOCUMENT_BYTES = 256 * 1024
SEVERITIES = ("normal", "security", "critical")
SCHEMA = 1

_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_GIT_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}$")
_GIT_COMMIT = re.compile(r"^[0-9a-fA-F]{40}$")
_KEYID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_NOTES = 64 * 1024


class RegistryError(Exception):
    """The registry could not be read, or what it sent was refused.

    `permanent` is True when asking again soon cannot help (a rejected document, a 404);
    False for network trouble, timeouts, 5xx, 429. `retry_after` is the server's
    `Retry-After` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.http_status = http_status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


def _rejected(message: str) -> RegistryError:
    return RegistryError(message, permanent=True)


@dataclass(frozen=True)
class Release:
    version: str
    channel: str = "stable"
    published_at: datetime | None = None
    notes: str = ""
    severity: str = "normal"
    git_tag: str = ""
    git_commit: str | None = None
    min_upgrade_from: str | None = None

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["published_at"] = self.published_at.isoformat() if self.published_at else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Release:
        published = data.get("published_at")
        return cls(
            version=data["version"],
            channel=data.get("channel", "stable"),
            published_at=datetime.fromisoformat(published) if published else None,
            notes=data.get("notes", ""),
            severity=data.get("severity", "normal"),
            git_tag=data.get("git_tag") or f"v{data['version']}",
            git_commit=data.get("git_commit"),
            min_upgrade_from=data.get("min_upgrade_from"),
        )


@dataclass(frozen=True)
class Document:
    """An accepted registry document, normalised."""

    shape: str  # "legacy" | "per_project" | "full" | "signed"
    verified: bool  # a pinned key's signature verified
    releases: tuple[Release, ...]
    meta_version: int | None = None
    expires: datetime | None = None
    keyids: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def parse_version(text: object) -> Version | None:
    """PEP 440 version of `text` (a leading "v" allowed), or None when it is not one."""
    if not isinstance(text, str) or not 0 < len(text) <= 64:
        return None
    stripped = text[1:] if text[:1] in ("v", "V") else text
    try:
        return Version(stripped)
    except InvalidVersion:
        return None


def _version_text(text: str) -> str:
    return text[1:] if text[:1] in ("v", "V") else text


def _parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise _rejected(f"{what} is not an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _rejected(f"{what} is not an ISO 8601 date-time: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        # A registry publishes UTC; a missing offset is read as UTC rather than local time.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers could disagree on which value wins: refuse the ambiguity.
            raise _rejected(f"the document repeats the key {key[:64]!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise _rejected(f"the document contains {name}, which is not JSON")


def _load_json(body: bytes, what: str) -> Any:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise _rejected(f"the {what} is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _rejected(f"the {what} is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except RegistryError:
        raise
    except RecursionError:
        raise _rejected(f"the {what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints too long to convert
        raise _rejected(f"the {what} is not JSON ({str(exc)[:120]})") from None


def _release(entry: object, position: str, warnings: list[str]) -> Release | None:
    """One release, or None (with a warning) when any of its fields is invalid."""
    if not isinstance(entry, dict):
        warnings.append(f"{position}: not an object; ignored")
        return None
    raw_version = entry.get("version")
    version = parse_version(raw_version)
    if version is None:
        warnings.append(f"{position}: invalid version {str(raw_version)[:64]!r}; ignored")
        return None
    text = _version_text(raw_version)  # type: ignore[arg-type]  # parse_version checked str

    def bad(field_name: str) -> None:
        warnings.append(f"{position} ({text}): invalid {field_name}; ignored")

    channel = entry.get("channel", "stable")
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        return bad("channel")
    severity = entry.get("severity", "normal")
    if severity not in SEVERITIES:
        return bad("severity")
    notes = entry.get("notes", entry.get("changelog", ""))
    if notes is None:
        notes = ""
    if not isinstance(notes, str) or len(notes) > _MAX_NOTES:
        return bad("notes")
    git_tag = entry.get("git_tag") or f"v{text}"
    if not isinstance(git_tag, str) or not _GIT_TAG.match(git_tag) or ".." in git_tag:
        return bad("git_tag")
    git_commit = entry.get("git_commit")
    if git_commit is not None and (not isinstance(git_commit, str) or not _GIT_COMMIT.match(git_commit)):
        return bad("git_commit")
    minimum = entry.get("min_upgrade_from")
    if minimum is not None:
        if parse_version(minimum) is None:
            return bad("min_upgrade_from")
        minimum = _version_text(minimum)
    published = entry.get("published_at")
    published_at = None
    if published is not None:
        try:
            published_at = _parse_time(published, "published_at")
        except RegistryError:
            return bad("published_at")
    return Release(
        version=text,
        channel=channel,
        published_at=published_at,
        notes=notes,
        severity=severity,
        git_tag=git_tag,
        git_commit=git_commit.lower() if git_commit else None,
        min_upgrade_from=minimum,
    )


def _full(
    data: object, *, project: str, now: datetime, highest_meta_version: int | None
) -> tuple[list[Release], int, datetime | None, list[str]]:
    if not isinstance(data, dict):
        raise _rejected("the document is not a JSON object")
    if data.get("schema") != SCHEMA or isinstance(data.get("schema"), bool):
        raise _rejected(f"unsupported schema {str(data.get('schema'))[:16]!r} (expected {SCHEMA})")
    if data.get("project") != project:
        raise _rejected(f"the document is for project {str(data.get('project'))[:64]!r}, not {project!r}")
    meta_version = data.get("meta_version", 0)
    if not isinstance(meta_version, int) or isinstance(meta_version, bool) or not 0 <= meta_version < 2**63:
        raise _rejected("meta_version is not a non-negative whole number")
    if highest_meta_version is not None and meta_version < highest_meta_version:
        raise _rejected(
            f"meta_version {meta_version} is lower than {highest_meta_version}, accepted before "
            "(a rollback to an older document)"
        )
    expires = None
    if data.get("expires") is not None:
        expires = _parse_time(data["expires"], "expires")
        if expires <= now:
            raise _rejected(f"the document expired at {expires.isoformat()} (stale or replayed)")
    entries = data.get("releases", [])
    if not isinstance(entries, list):
        raise _rejected("releases is not a list")
    warnings: list[str] = []
    releases = [_release(entry, f"release #{i + 1}", warnings) for i, entry in enumerate(entries)]
    return [r for r in releases if r is not None], meta_version, expires, warnings


def _verify_envelope(data: dict[str, Any], keys: Mapping[str, bytes]) -> tuple[bytes, tuple[str, ...]]:
    """The signed bytes, once every signature on them verifies with a pinned key."""
    if set(data) != {"signed", "signatures"}:
        raise _rejected("a signed document has exactly the fields 'signed' and 'signatures'")
    signed, signatures = data["signed"], data["signatures"]
    if not isinstance(signed, str):
        raise _rejected("'signed' is not a base64 string")
    try:
        payload = base64.b64decode(signed, validate=True)
    except (binascii.Error, ValueError):
        raise _rejected("'signed' is not valid base64") from None
    if not isinstance(signatures, list) or not signatures:
        raise _rejected("'signatures' is not a non-empty list")
    seen: list[str] = []
    for item in signatures:
        if not isinstance(item, dict) or set(item) != {"keyid", "sig"}:
            raise _rejected("each signature is an object with exactly 'keyid' and 'sig'")
        keyid, sig = item["keyid"], item["sig"]
        if not isinstance(keyid, str) or not _KEYID.match(keyid):
            raise _rejected("a signature has an invalid keyid")
        if keyid in seen:
            raise _rejected(f"keyid {keyid!r} signs twice")
        seen.append(keyid)
        if keyid not in keys:
            raise _rejected(f"keyid {keyid!r} is not a pinned key")
        try:
            raw_sig = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
        except (binascii.Error, ValueError):
            raw_sig = b""
        if len(raw_sig) != 64:
            raise _rejected(f"the signature by {keyid!r} is not a base64 Ed25519 signature")
        try:
            Ed25519PublicKey.from_public_bytes(keys[keyid]).verify(raw_sig, payload)
        except (InvalidSignature, ValueError):
            raise _rejected(f"the signature by {keyid!r} does not verify") from None
    return payload, tuple(seen)


def _entry(data: dict[str, Any], project: str) -> object:
    if "projects" in data:
        projects = data["projects"]
        if not isinstance(projects, dict):
            raise _rejected("'projects' is not an object")
        if project not in projects:
            raise _rejected(f"the document has no entry for project {project!r}")
        return projects[project]
    return data[project]


def parse_document(
    body: bytes,
    *,
    keys: Mapping[str, bytes],
    now: datetime,
    highest_meta_version: int | None = None,
    project: str = PROJECT,
) -> Document:
    """Verify and normalise a registry document (any of the four shapes of SPEC §4.1).

    `keys` are the pinned Ed25519 public keys (keyid → 32 bytes); when there are any, only
    a signed envelope is accepted and its signatures are checked before the signed bytes
    are parsed. `highest_meta_version` is the highest meta_version accepted before (anti-
    rollback); `now` is an aware datetime used for `expires`.
    """
    try:
        return _parse(body, keys=keys, now=now, highest_meta_version=highest_meta_version, project=project)
    except RegistryError:
        raise
    except Exception as exc:  # a bug here must still surface as a refused document
        raise _rejected(f"the document could not be read ({type(exc).__name__})") from exc


def _parse(
    body: bytes,
    *,
    keys: Mapping[str, bytes],
    now: datetime,
    highest_meta_version: int | None,
    project: str,
) -> Document:
    if not isinstance(body, bytes | bytearray):
        raise _rejected("the document is not bytes")
    data = _load_json(bytes(body), "document")
    if not isinstance(data, dict):
        raise _rejected("the document is not a JSON object")
    is_envelope = "signed" in data or "signatures" in data

    if keys:
        if not is_envelope:
            raise _rejected("the document is not signed, but OPENTRACE_REGISTRY_KEYS requires a signature")
        payload, keyids = _verify_envelope(data, keys)
        inner = _load_json(payload, "signed document")
        releases, meta, expires, warnings = _full(
            inner, project=project, now=now, highest_meta_version=highest_meta_version
        )
        return Document("signed", True, tuple(releases), meta, expires, keyids, tuple(warnings))

    if is_envelope:
        # No pinned keys: read what was signed, but nothing vouches for it.
        signed = data.get("signed")
        if not isinstance(signed, str):
            raise _rejected("'signed' is not a base64 string")
        try:
            payload = base64.b64decode(signed, validate=True)
        except (binascii.Error, ValueError):
            raise _rejected("'signed' is not valid base64") from None
        inner = _load_json(payload, "signed document")
        releases, meta, expires, warnings = _full(
            inner, project=project, now=now, highest_meta_version=highest_meta_version
        )
        return Document("signed", False, tuple(releases), meta, expires, (), tuple(warnings))

    if "schema" in data or "releases" in data:
        releases, meta, expires, warnings = _full(
            data, project=project, now=now, highest_meta_version=highest_meta_version
        )
        return Document("full", False, tuple(releases), meta, expires, (), tuple(warnings))

    if "projects" in data or project in data:
        entry = _entry(data, project)
        if not isinstance(entry, dict):
            raise _rejected(f"the entry for project {project!r} is not an object")
        warnings = []
        release = _release(entry, project, warnings)
        return Document("per_project", False, (release,) if release else (), warnings=tuple(warnings))

    if "version" in data:
        warnings = []
        release = _release(data, "document", warnings)
        return Document("legacy", False, (release,) if release else (), warnings=tuple(warnings))

    raise _rejected("the document has none of the registry shapes (see docs/registry.md)")


def parse_signable(body: bytes, *, now: datetime, project: str = PROJECT) -> Document:
    """Read a schema-1 document the way an install will once it is signed (for publishers)."""
    try:
        releases, meta, expires, warnings = _full(
            _load_json(body, "document"), project=project, now=now, highest_meta_version=None
        )
    except RegistryError:
        raise
    except Exception as exc:
        raise _rejected(f"the document could not be read ({type(exc).__name__})") from exc
    return Document("full", False, tuple(releases), meta, expires, (), tuple(warnings))


@dataclass(frozen=True)
class Offer:
    """What the registry offers this install."""

    latest: Release | None  # the newest release above the running version on our channel
    installable: bool  # min_upgrade_from is met
    intermediate: Release | None  # when not installable: the newest release we can install first
    skipped: bool  # an admin chose to skip `latest`

    @property
    def update_available(self) -> bool:
        return self.latest is not None and not self.skipped


def _same_version(a: str, b: str) -> bool:
    va, vb = parse_version(a), parse_version(b)
    return va is not None and va == vb


def select_offer(
    releases: Iterable[Release], *, running: str, channel: str, skipped: Collection[str] = ()
) -> Offer:
    """The release to offer: newest on `channel` (stable releases reach every channel)."""
    current = parse_version(running)
    if current is None:
        return Offer(None, False, None, False)
    newer = sorted(
        (r for r in releases if r.channel in (channel, "stable") and r.parsed_version > current),
        key=lambda r: r.parsed_version,
    )
    if not newer:
        return Offer(None, False, None, False)
    latest = newer[-1]

    def reachable(release: Release) -> bool:
        minimum = parse_version(release.min_upgrade_from) if release.min_upgrade_from else None
        return minimum is None or current >= minimum

    installable = reachable(latest)
    intermediate = None
    if not installable:
        stepping = [r for r in newer[:-1] if reachable(r)]
        intermediate = stepping[-1] if stepping else None
    is_skipped = any(_same_version(latest.version, s) for s in skipped)
    return Offer(latest, installable, intermediate, is_skipped)
