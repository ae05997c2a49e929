"""Reading, verifying and claiming the trigger file (SPEC §5).

`read_trigger()` opens `<DATA_DIR>/updates/trigger` without following links and accepts only
a regular file with one link and at most 512 KiB, exactly the SPEC's fields, a valid HMAC,
and a target release offered by the manifest it carries (re-verified with the pinned keys
when they are configured). `claim()` renames it into `processing/<run_id>.json`, so a
trigger runs at most once; `reject()` moves it to `rejected/` with the reason beside it.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import re
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from host_agent import manifest, safejson
from host_agent.clock import UTC
from host_agent.errors import AgentError, TriggerRejected
from host_agent.fsutil import fsync_dir
from host_agent.signing import trigger_signature, verify_equal
from host_agent.versions import compare, parse_version

MAX_BYTES = 512 * 1024
FIELDS = frozenset(
    {
        "run_id",
        "target_version",
        "git_tag",
        "git_commit",
        "requested_by",
        "requested_at",
        "manifest",
        "signature",
    }
)
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


class TriggerSwapped(AgentError):
    permanent = False


@dataclass(frozen=True)
class Trigger:
    run_id: str
    target_version: str
    git_tag: str
    git_commit: str | None
    requested_by: str
    requested_at: str
    manifest: bytes
    min_upgrade_from: str | None
    identity: tuple[int, int]  # (st_dev, st_ino) of the file that was verified


def _read_bounded(path: Path) -> tuple[bytes, tuple[int, int]]:
    try:
        # O_NONBLOCK: opening a FIFO planted as the trigger must not hang the agent.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TriggerRejected("the trigger is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TriggerRejected("the trigger is not a regular file")
        if info.st_nlink != 1:
            raise TriggerRejected(f"the trigger has {info.st_nlink} hard links (expected 1)")
        if info.st_size > MAX_BYTES:
            raise TriggerRejected(f"the trigger is {info.st_size} bytes (limit {MAX_BYTES})")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:
            raise TriggerRejected(f"the trigger grew past {MAX_BYTES} bytes while being read")
        return b"".join(chunks), (info.st_dev, info.st_ino)
    finally:
        os.close(fd)


def _string(fields: dict[str, object], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str) or not value:
        raise TriggerRejected(f"field {name!r} must be a non-empty string")
    return value


def parse_trigger(
    data: bytes,
    *,
    secret: str,
    registry_keys: dict[str, bytes],
    running_version: str,
    identity: tuple[int, int] = (0, 0),
    now: datetime | None = None,
) -> Trigger:
    try:
        fields = safejson.loads(data)
    except safejson.UntrustedJSONError as exc:
        raise TriggerRejected(f"the trigger is not UTF-8 JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise TriggerRejected("the trigger is not a JSON object")
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise TriggerRejected(f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(FIELDS - set(fields))
    if missing:
        raise TriggerRejected(f"missing field(s): {', '.join(missing)}")
    signature = fields["signature"]
    if not isinstance(signature, str) or not _SIGNATURE.match(signature):
        raise TriggerRejected("the signature is not a hex HMAC-SHA256")
    if not verify_equal(trigger_signature(secret, fields), signature):
        raise TriggerRejected("bad signature (HMAC with OPENTRACE_AGENT_SECRET does not match)")

    run_id = _string(fields, "run_id")
    try:
        if str(uuid.UUID(run_id)) != run_id.lower():
            raise ValueError
    except ValueError:
        raise TriggerRejected("run_id is not a UUID") from None
    target = _string(fields, "target_version")
    if parse_version(target) is None:
        raise TriggerRejected(f"target_version {target!r} is not a version")
    tag = _string(fields, "git_tag")
    if not _TAG.match(tag) or ".." in tag:
        raise TriggerRejected(f"git_tag {tag!r} is not a plain tag name")
    commit = fields["git_commit"]
    if commit is not None and (not isinstance(commit, str) or not _COMMIT.match(commit)):
        raise TriggerRejected("git_commit must be 40 lowercase hex digits or null")
    requested_by = _string(fields, "requested_by")
    requested_at = _string(fields, "requested_at")
    try:
        body = base64.b64decode(_string(fields, "manifest"), validate=True)
    except (binascii.Error, ValueError):
        raise TriggerRejected("manifest is not valid base64") from None

    offered = [r for r in manifest.releases(body, registry_keys, now) if compare(r.version, target) == 0]
    if not offered:
        raise TriggerRejected(f"version {target} is not offered by the manifest")
    release = offered[0]
    if release.git_tag != tag:
        raise TriggerRejected(f"git_tag {tag!r} differs from the manifest's {release.git_tag!r}")
    if release.git_commit and release.git_commit != commit:
        raise TriggerRejected("git_commit differs from the commit the manifest pins")
    if parse_version(running_version) is not None and compare(target, running_version) <= 0:
        raise TriggerRejected(f"version {target} is not newer than the running {running_version}")
    return Trigger(
        run_id=run_id.lower(),
        target_version=target,
        git_tag=tag,
        git_commit=commit,
        requested_by=requested_by,
        requested_at=requested_at,
        manifest=body,
        min_upgrade_from=release.min_upgrade_from,
        identity=identity,
    )


def read_trigger(
    path: Path,
    *,
    secret: str,
    registry_keys: dict[str, bytes],
    running_version: str,
    now: datetime | None = None,
) -> Trigger:
    data, identity = _read_bounded(path)
    return parse_trigger(
        data,
        secret=secret,
        registry_keys=registry_keys,
        running_version=running_version,
        identity=identity,
        now=now,
    )


def run_id_hint(path: Path) -> str | None:
    """The run id a rejected trigger names, if it is a UUID (read without following links)."""
    try:
        data, _ = _read_bounded(path)
        value = safejson.loads(data).get("run_id")  # type: ignore[union-attr]
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except Exception:
        return None


class TriggerStore:
    """The folders of `<DATA_DIR>/updates/` the agent moves triggers between."""

    def __init__(self, updates_dir: Path) -> None:
        self.dir = updates_dir
        self.trigger = updates_dir / "trigger"
        self.processing = updates_dir / "processing"
        self.done = updates_dir / "done"
        self.rejected = updates_dir / "rejected"
        for folder in (self.dir, self.processing, self.done, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)

    def pending(self) -> bool:
        return os.path.lexists(self.trigger)

    def was_used(self, run_id: str) -> bool:
        return (self.processing / f"{run_id}.json").exists() or (self.done / f"{run_id}.json").exists()

    def claim(self, trigger: Trigger) -> Path:
        if self.was_used(trigger.run_id):
            raise TriggerRejected(f"run id {trigger.run_id} was already used")
        target = self.processing / f"{trigger.run_id}.json"
        os.rename(self.trigger, target)
        fsync_dir(self.dir)
        fsync_dir(self.processing)
        info = os.lstat(target)
        if (info.st_dev, info.st_ino) != trigger.identity:
            # The backend withdrew the trigger and wrote a new one between our read and our
            # rename: put the new one back (unless yet another arrived) and read it afresh.
            if not os.path.lexists(self.trigger):
                os.rename(target, self.trigger)
            else:
                os.rename(target, self.rejected / f"{trigger.run_id}-superseded.json")
            raise TriggerSwapped("the trigger changed while it was being verified")
        return target

    def reject(self, reason: str, now: datetime | None = None) -> Path | None:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.rejected / f"{stamp}.trigger"
        try:
            os.rename(self.trigger, target)
        except FileNotFoundError:
            return None
        # backslashreplace: a reason quoting hostile input must not fail to be written.
        (self.rejected / f"{stamp}.reason").write_text(
            reason + "\n", encoding="utf-8", errors="backslashreplace"
        )
        fsync_dir(self.dir)
        return target

    def finish(self, run_id: str) -> None:
        source = self.processing / f"{run_id}.json"
        if source.exists():
            os.rename(source, self.done / f"{run_id}.json")
