"""The registry document (SPEC §4.1-4.2): bytes in, verified and normalised releases out.

`parse_document()` is the one entry point; the backend's check and the agent's reading of a
trigger's `manifest` both call it, so they accept and refuse exactly the same documents.
Whatever bytes it is given, it raises nothing but `RegistryError`. See docs/registry.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.version import InvalidVersion, Version

from contract import jsonsafe
from contract.keys import KEYID

PROJECT = "opentrace"
MAX_DOCUMENT_BYTES = 256 * 1024
SCHEMA = 1
SEVERITIES = ("normal", "security", "critical")
ED25519_SIGNATURE_BYTES = 64

CHANNEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
# A tag git accepts and that can never be read as an option or a path outside refs/tags.
GIT_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}")
GIT_COMMIT = re.compile(r"[0-9a-fA-F]{40}")
_MAX_NOTES = 64 * 1024
_MAX_VERSION = 64
_MAX_DOWNTIME_SECONDS = 7 * 24 * 3600
_MAX_REASON = 1000
_UTC = timezone.utc
_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)


class RegistryError(Exception):
    """The registry could not be read, or what it sent was refused.

    `permanent` is True when asking again soon cannot help (a refused document, a 404);
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


def _refused(message: str) -> RegistryError:
    return RegistryError(message, permanent=True)


@dataclass(frozen=True)
class Release:
    """One release, every field of SPEC §4.1 with its default."""

    version: str
    channel: str = "stable"
    published_at: datetime | None = None
    notes: str = ""
    severity: str = "normal"
    git_tag: str = ""
    git_commit: str | None = None
    min_upgrade_from: str | None = None
    downtime: bool = False  # its migrations are not backward compatible (SPEC §7)
    withdrawn: bool = False
    rollout: int = 100  # percentage of installs it is offered to
    # Beyond SPEC §4.1's list, for the confirmation page (SPEC §7: the admin is told first):
    downtime_seconds: int | None = None  # how long the declared downtime is expected to last
    irreversible: str | None = None  # why a rollback of it would restore the backup

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["published_at"] = self.published_at.isoformat() if self.published_at else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Release:
        """A release stored by `to_json()` (rows stored before a field existed get its default)."""
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
            downtime=bool(data.get("downtime", False)),
            withdrawn=bool(data.get("withdrawn", False)),
            rollout=int(data.get("rollout", 100)),
            downtime_seconds=data.get("downtime_seconds"),
            irreversible=data.get("irreversible"),
        )


@dataclass(frozen=True)
class Document:
    """An accepted registry document, normalised."""

    shape: str  # "legacy" | "per_project" | "full" | "signed"
    verified: bool  # every signature verified with a pinned key
    releases: tuple[Release, ...]
    meta_version: int | None = None
    expires: datetime | None = None
    keyids: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def release(self, version: str) -> Release | None:
        """The release whose version equals `version` by PEP 440, if the document has one."""
        wanted = parse_version(version)
        if wanted is None:
            return None
        return next((r for r in self.releases if r.parsed_version == wanted), None)


def parse_version(text: object) -> Version | None:
    """PEP 440 version of `text` (a leading "v" allowed), or None when it is not one."""
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_VERSION:
        return None
    try:
        return Version(_version_text(text))
    except InvalidVersion:
        return None


def _version_text(text: str) -> str:
    return text[1:] if text[:1] in ("v", "V") else text


def parse_time(value: object, what: str) -> datetime:
    """An aware datetime from ISO 8601 text (no offset means UTC); `RegistryError` otherwise.

    Parsed here rather than by `datetime.fromisoformat`, which reads more on Python 3.11
    (the backend) than on 3.10 (an agent's host): both sides must read the same dates.
    """
    match = _ISO_8601.fullmatch(value) if isinstance(value, str) and len(value) <= 64 else None
    if match is None:
        raise _refused(f"{what} is not an ISO 8601 date-time: {str(value)[:64]!r}")
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0)) if sign else timedelta(0)
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
        return when.astimezone(_UTC)
    except (ValueError, OverflowError):
        raise _refused(f"{what} is not a valid date-time: {str(value)[:64]!r}") from None


def _load_json(body: bytes, what: str) -> object:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise _refused(f"{what} is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
    try:
        return jsonsafe.loads(body, what)
    except jsonsafe.JSONRejected as exc:
        raise _refused(str(exc)) from None


def _optional_bool(entry: Mapping[str, object], name: str) -> bool | None:
    value = entry.get(name)
    if value is None:
        return False
    return value if isinstance(value, bool) else None


def _release(entry: object, position: str, warnings: list[str]) -> Release | None:
    """One release, or None (with a warning) when any of its fields is invalid."""
    if not isinstance(entry, dict):
        warnings.append(f"{position}: not an object; ignored")
        return None
    raw_version = entry.get("version")
    if parse_version(raw_version) is None or not isinstance(raw_version, str):
        warnings.append(f"{position}: invalid version {str(raw_version)[:64]!r}; ignored")
        return None
    text = _version_text(raw_version)

    def bad(field_name: str) -> Release | None:
        warnings.append(f"{position} ({text}): invalid {field_name}; ignored")
        return None

    channel = entry.get("channel", "stable")
    if not isinstance(channel, str) or not CHANNEL.fullmatch(channel):
        return bad("channel")
    severity = entry.get("severity", "normal")
    if not isinstance(severity, str) or severity not in SEVERITIES:
        return bad("severity")
    notes = entry.get("notes", entry.get("changelog", ""))
    if notes is None:
        notes = ""
    if not isinstance(notes, str) or len(notes) > _MAX_NOTES:
        return bad("notes")
    git_tag = entry.get("git_tag") or f"v{text}"
    if not isinstance(git_tag, str) or not GIT_TAG.fullmatch(git_tag) or ".." in git_tag:
        return bad("git_tag")
    git_commit = entry.get("git_commit")
    if git_commit is not None and (not isinstance(git_commit, str) or not GIT_COMMIT.fullmatch(git_commit)):
        return bad("git_commit")
    minimum = entry.get("min_upgrade_from")
    if minimum is not None:
        if not isinstance(minimum, str) or parse_version(minimum) is None:
            return bad("min_upgrade_from")
        minimum = _version_text(minimum)
    published = entry.get("published_at")
    published_at = None
    if published is not None:
        try:
            published_at = parse_time(published, "published_at")
        except RegistryError:
            return bad("published_at")
    downtime = _optional_bool(entry, "downtime")
    if downtime is None:
        return bad("downtime")
    withdrawn = _optional_bool(entry, "withdrawn")
    if withdrawn is None:
        return bad("withdrawn")
    rollout = entry.get("rollout", 100)
    if rollout is None:
        rollout = 100
    if not isinstance(rollout, int) or isinstance(rollout, bool) or not 0 <= rollout <= 100:
        return bad("rollout")
    downtime_seconds = entry.get("downtime_seconds")
    if downtime_seconds is not None and (
        not isinstance(downtime_seconds, int)
        or isinstance(downtime_seconds, bool)
        or not 0 < downtime_seconds <= _MAX_DOWNTIME_SECONDS
    ):
        return bad("downtime_seconds")
    irreversible = entry.get("irreversible")
    if irreversible is not None and (
        not isinstance(irreversible, str) or not irreversible.strip() or len(irreversible) > _MAX_REASON
    ):
        return bad("irreversible")
    return Release(
        version=text,
        channel=channel,
        published_at=published_at,
        notes=notes,
        severity=severity,
        git_tag=git_tag,
        git_commit=git_commit.lower() if git_commit else None,
        min_upgrade_from=minimum,
        downtime=downtime,
        withdrawn=withdrawn,
        rollout=rollout,
        downtime_seconds=downtime_seconds,
        irreversible=" ".join(irreversible.split()) if irreversible else None,
    )


@dataclass(frozen=True)
class _Full:
    releases: tuple[Release, ...]
    meta_version: int
    expires: datetime | None
    warnings: tuple[str, ...]


def _full(data: object, *, project: str, now: datetime, highest_meta_version: int | None) -> _Full:
    if not isinstance(data, dict):
        raise _refused("the document is not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        raise _refused(f"unsupported schema {str(schema)[:16]!r} (expected {SCHEMA})")
    if data.get("project") != project:
        raise _refused(f"the document is for project {str(data.get('project'))[:64]!r}, not {project!r}")
    meta_version = data.get("meta_version", 0)
    if not isinstance(meta_version, int) or isinstance(meta_version, bool) or not 0 <= meta_version < 2**63:
        raise _refused("meta_version is not a non-negative whole number")
    if highest_meta_version is not None and meta_version < highest_meta_version:
        raise _refused(
            f"meta_version {meta_version} is lower than {highest_meta_version}, accepted before "
            "(a rollback to an older document)"
        )
    expires = None
    if data.get("expires") is not None:
        expires = parse_time(data["expires"], "expires")
        if expires <= now:
            raise _refused(f"the document expired at {expires.isoformat()} (stale or replayed)")
    entries = data.get("releases", [])
    if not isinstance(entries, list):
        raise _refused("releases is not a list")
    warnings: list[str] = []
    found = [_release(entry, f"release #{i + 1}", warnings) for i, entry in enumerate(entries)]
    releases = tuple(r for r in found if r is not None)
    return _Full(releases, meta_version, expires, tuple(warnings))


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise _refused(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _refused(f"{what} is not valid base64") from None


def _verify_envelope(data: Mapping[str, object], keys: Mapping[str, bytes]) -> tuple[bytes, tuple[str, ...]]:
    """The signed bytes, once every signature on them verifies with a pinned key.

    One signature that does not verify refuses the document, even beside one that does: a
    signer that is not who it claims, or bytes that were changed, is never outvoted.
    """
    if set(data) != {"signed", "signatures"}:
        raise _refused("a signed document has exactly the fields 'signed' and 'signatures'")
    payload = _b64(data["signed"], "'signed'")
    signatures = data["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise _refused("'signatures' is not a non-empty list")
    seen: list[str] = []
    for item in signatures:
        if not isinstance(item, dict) or set(item) != {"keyid", "sig"}:
            raise _refused("each signature is an object with exactly 'keyid' and 'sig'")
        keyid, sig = item["keyid"], item["sig"]
        if not isinstance(keyid, str) or not KEYID.fullmatch(keyid):
            raise _refused("a signature has an invalid keyid")
        if keyid in seen:
            raise _refused(f"keyid {keyid!r} signs twice")
        seen.append(keyid)
        if keyid not in keys:
            raise _refused(f"keyid {keyid!r} is not a pinned key")
        try:
            raw_sig = _b64(sig, "a signature")
        except RegistryError:
            raw_sig = b""
        if len(raw_sig) != ED25519_SIGNATURE_BYTES:
            raise _refused(f"the signature by {keyid!r} is not a base64 Ed25519 signature")
        try:
            Ed25519PublicKey.from_public_bytes(keys[keyid]).verify(raw_sig, payload)
        except (InvalidSignature, ValueError):
            raise _refused(f"the signature by {keyid!r} does not verify") from None
    return payload, tuple(seen)


def _entry(data: Mapping[str, object], project: str) -> object:
    if "projects" in data:
        projects = data["projects"]
        if not isinstance(projects, dict):
            raise _refused("'projects' is not an object")
        if project not in projects:
            raise _refused(f"the document has no entry for project {project!r}")
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

    `keys` are the pinned Ed25519 public keys (keyid → 32 bytes); when there are any, only a
    signed envelope is accepted, and every one of its signatures is checked before the signed
    bytes are parsed. `highest_meta_version` is the highest meta_version accepted before
    (anti-rollback); `now`, an aware datetime, is compared with `expires`.
    """
    try:
        return _parse(body, keys=keys, now=now, highest_meta_version=highest_meta_version, project=project)
    except RegistryError:
        raise
    except Exception as exc:  # a bug here must still surface as a refused document
        raise _refused(f"the document could not be read ({type(exc).__name__})") from exc


def _parse(
    body: bytes,
    *,
    keys: Mapping[str, bytes],
    now: datetime,
    highest_meta_version: int | None,
    project: str,
) -> Document:
    if not isinstance(body, (bytes, bytearray)):
        raise _refused("the document is not bytes")
    data = _load_json(bytes(body), "the document")
    if not isinstance(data, dict):
        raise _refused("the document is not a JSON object")
    is_envelope = "signed" in data or "signatures" in data

    if keys:
        if not is_envelope:
            raise _refused("the document is not signed, but OPENTRACE_REGISTRY_KEYS requires a signature")
        payload, keyids = _verify_envelope(data, keys)
        full = _full(
            _load_json(payload, "the signed document"),
            project=project,
            now=now,
            highest_meta_version=highest_meta_version,
        )
        return Document("signed", True, full.releases, full.meta_version, full.expires, keyids, full.warnings)

    if is_envelope:
        # No pinned keys: read what was signed, but nothing vouches for it.
        payload = _b64(data.get("signed"), "'signed'")
        full = _full(
            _load_json(payload, "the signed document"),
            project=project,
            now=now,
            highest_meta_version=highest_meta_version,
        )
        return Document("signed", False, full.releases, full.meta_version, full.expires, (), full.warnings)

    if "schema" in data or "releases" in data:
        full = _full(data, project=project, now=now, highest_meta_version=highest_meta_version)
        return Document("full", False, full.releases, full.meta_version, full.expires, (), full.warnings)

    warnings: list[str] = []
    if "projects" in data or project in data:
        entry = _entry(data, project)
        if not isinstance(entry, dict):
            raise _refused(f"the entry for project {project!r} is not an object")
        release = _release(entry, project, warnings)
        return Document("per_project", False, (release,) if release else (), warnings=tuple(warnings))

    if "version" in data:
        release = _release(data, "document", warnings)
        return Document("legacy", False, (release,) if release else (), warnings=tuple(warnings))

    raise _refused("the document has none of the registry shapes (see docs/registry.md)")


def parse_signable(body: bytes, *, now: datetime, project: str = PROJECT) -> Document:
    """Read a schema-1 document the way an install will once it is signed (for publishers)."""
    try:
        full = _full(_load_json(body, "the document"), project=project, now=now, highest_meta_version=None)
    except RegistryError:
        raise
    except Exception as exc:
        raise _refused(f"the document could not be read ({type(exc).__name__})") from exc
    return Document("full", False, full.releases, full.meta_version, full.expires, (), full.warnings)
