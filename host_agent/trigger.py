"""Reading, verifying and claiming the trigger file (SPEC §5).

`read_trigger()` reads `<DATA_DIR>/updates/trigger` with `contract.trigger` (no links
followed, a regular file with one link and at most 512 KiB, exactly the SPEC's fields, a valid
HMAC) and accepts it only when the registry document it carries (`manifest`, read by
`contract.registry` exactly as the backend reads it, with the pinned keys when configured)
offers the target release. `claim()` renames it into `processing/<run_id>.json`, so a trigger
runs at most once; `reject()` moves it to `rejected/` with the reason beside it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from contract import trigger as trigger_file
from contract.files import fsync_dir
from contract.registry import RegistryError, parse_document, parse_version
from host_agent.clock import UTC
from host_agent.errors import AgentError, TriggerRejected


class TriggerSwapped(AgentError):
    """The trigger changed while it was being verified; it is read again."""


@dataclass(frozen=True)
class Trigger:
    """A trigger that verified and whose release the manifest offers."""

    run_id: str
    target_version: str
    git_tag: str
    git_commit: str | None
    requested_by: str
    requested_at: str
    manifest: bytes
    min_upgrade_from: str | None
    identity: tuple[int, int]  # (st_dev, st_ino) of the file that was verified


def parse_trigger(
    data: bytes,
    *,
    secret: str,
    registry_keys: Mapping[str, bytes],
    running_version: str,
    identity: tuple[int, int] = (0, 0),
    now: datetime | None = None,
) -> Trigger:
    try:
        fields = trigger_file.parse(data, secret=secret)
    except trigger_file.TriggerError as exc:
        raise TriggerRejected(str(exc)) from None
    try:
        document = parse_document(fields.manifest, keys=registry_keys, now=now or datetime.now(UTC))
    except RegistryError as exc:
        raise TriggerRejected(f"manifest: {exc}") from None
    target = fields.target_version
    release = document.release(target)
    if release is None:
        raise TriggerRejected(f"version {target} is not offered by the manifest")
    if release.git_tag != fields.git_tag:
        raise TriggerRejected(f"git_tag {fields.git_tag!r} differs from the manifest's {release.git_tag!r}")
    if release.git_commit and release.git_commit != fields.git_commit:
        raise TriggerRejected("git_commit differs from the commit the manifest pins")
    running = parse_version(running_version)
    if running is not None and release.parsed_version <= running:
        raise TriggerRejected(f"version {target} is not newer than the running {running_version}")
    return Trigger(
        run_id=fields.run_id,
        target_version=target,
        git_tag=fields.git_tag,
        git_commit=fields.git_commit,
        requested_by=fields.requested_by,
        requested_at=fields.requested_at,
        manifest=fields.manifest,
        min_upgrade_from=release.min_upgrade_from,
        identity=identity,
    )


def read_trigger(
    path: Path,
    *,
    secret: str,
    registry_keys: Mapping[str, bytes],
    running_version: str,
    now: datetime | None = None,
) -> Trigger:
    try:
        file = trigger_file.read(path)
    except trigger_file.TriggerError as exc:
        raise TriggerRejected(str(exc)) from None
    return parse_trigger(
        file.data,
        secret=secret,
        registry_keys=registry_keys,
        running_version=running_version,
        identity=file.identity,
        now=now,
    )


def run_id_hint(path: Path) -> str | None:
    """The run id a rejected trigger names, if it is a UUID (read without following links)."""
    try:
        value = trigger_file.load_fields(trigger_file.read(path).data).get("run_id")
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except (OSError, trigger_file.TriggerError, ValueError):
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
