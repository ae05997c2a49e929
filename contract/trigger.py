"""The trigger file (SPEC §5): its fields, their signature, and reading and writing it safely.

The backend writes `<DATA_DIR>/updates/trigger` with `write()`; the agent reads it with
`read()` (relative to a directory descriptor when it has one) and checks it with `parse()`.
Both sides use the same field list, signature and size limit from here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contract import files, jsonsafe, signing
from contract.events import TriggerFile, UnsignedTrigger
from contract.registry import GIT_TAG, parse_version

NAME = "trigger"
MAX_BYTES = 512 * 1024
MODE = 0o640  # the agent reads it as root; the app's group may look, nobody else
FIELDS = (
    "run_id",
    "target_version",
    "git_tag",
    "git_commit",
    "requested_by",
    "requested_at",
    "manifest",
    "signature",
)
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class TriggerError(Exception):
    """The trigger cannot be written, read or trusted; the message says why."""


@dataclass(frozen=True)
class Trigger:
    """A trigger whose signature verified and whose fields are well-formed."""

    run_id: str  # canonical lowercase UUID
    target_version: str
    git_tag: str
    git_commit: str | None
    requested_by: str
    requested_at: str
    manifest: bytes  # the registry body as the backend fetched it


def sign(fields: UnsignedTrigger, secret: str) -> TriggerFile:
    """The fields with their `signature`."""
    return {
        "run_id": fields["run_id"],
        "target_version": fields["target_version"],
        "git_tag": fields["git_tag"],
        "git_commit": fields["git_commit"],
        "requested_by": fields["requested_by"],
        "requested_at": fields["requested_at"],
        "manifest": fields["manifest"],
        "signature": signing.trigger_signature(secret, fields),
    }


def dump(fields: Mapping[str, object]) -> bytes:
    """The file's bytes; `TriggerError` when they would exceed the SPEC's 512 KiB."""
    data = json.dumps(fields, ensure_ascii=False, indent=1).encode()
    if len(data) > MAX_BYTES:
        raise TriggerError(f"the trigger would be {len(data)} bytes, over {MAX_BYTES}")
    return data


def write(directory: Path, fields: Mapping[str, object]) -> Path:
    """Write `<directory>/trigger` atomically (SPEC §5); the directory is created if missing."""
    data = dump(fields)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NAME
    files.write_atomic(path, data, mode=MODE)
    return path


def read(path: str | Path = NAME, *, dir_fd: int | None = None) -> files.BoundedRead:
    """The trigger's bytes, read without following links (relative to `dir_fd` when given).

    `TriggerError` for a link, a FIFO, a directory, extra hard links or over 512 KiB;
    `FileNotFoundError` when there is none (it may have been withdrawn).
    """
    try:
        return files.read_bounded(path, limit=MAX_BYTES, dir_fd=dir_fd, what="the trigger")
    except files.UnsafeFile as exc:
        raise TriggerError(str(exc)) from None


def load_fields(data: bytes) -> dict[str, object]:
    """The trigger's JSON object, unverified; `TriggerError` when it is not one."""
    try:
        fields = jsonsafe.loads(data, "the trigger")
    except jsonsafe.JSONRejected as exc:
        raise TriggerError(str(exc)) from None
    if not isinstance(fields, dict):
        raise TriggerError("the trigger is not a JSON object")
    return fields


def _string(fields: Mapping[str, object], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str) or not value:
        raise TriggerError(f"field {name!r} must be a non-empty string")
    return value


def parse(data: bytes, *, secret: str) -> Trigger:
    """Check the trigger's fields and signature (SPEC §5). Whether its release is offered is
    the reader's to check, against the registry document in `manifest`."""
    fields = load_fields(data)
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise TriggerError(f"unknown field(s): {', '.join(name[:64] for name in unknown)}")
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise TriggerError(f"missing field(s): {', '.join(missing)}")
    signature = fields["signature"]
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        raise TriggerError("the signature is not a hex HMAC-SHA256")
    if not signing.equal(signing.trigger_signature(secret, fields), signature):
        raise TriggerError("bad signature (HMAC with OPENTRACE_AGENT_SECRET does not match)")

    run_id = _string(fields, "run_id")
    try:
        canonical_id = str(uuid.UUID(run_id))
    except ValueError:
        raise TriggerError("run_id is not a UUID") from None
    if canonical_id != run_id.lower():
        raise TriggerError("run_id is not a UUID")
    target = _string(fields, "target_version")
    if parse_version(target) is None:
        raise TriggerError(f"target_version {target[:64]!r} is not a version")
    tag = _string(fields, "git_tag")
    if not GIT_TAG.fullmatch(tag) or ".." in tag:
        raise TriggerError(f"git_tag {tag[:64]!r} is not a plain tag name")
    commit = fields["git_commit"]
    if commit is not None and (not isinstance(commit, str) or not _COMMIT.fullmatch(commit)):
        raise TriggerError("git_commit must be 40 lowercase hex digits or null")
    requested_by = _string(fields, "requested_by")
    requested_at = _string(fields, "requested_at")
    try:
        manifest = base64.b64decode(_string(fields, "manifest"), validate=True)
    except (binascii.Error, ValueError):
        raise TriggerError("manifest is not valid base64") from None
    return Trigger(
        run_id=canonical_id,
        target_version=target,
        git_tag=tag,
        git_commit=commit,
        requested_by=requested_by,
        requested_at=requested_at,
        manifest=manifest,
    )
