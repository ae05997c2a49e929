"""Verifying and claiming the trigger (SPEC §5).

`parse_trigger()` checks the file's fields and HMAC (`contract.trigger`) and accepts it only
when a registry document offers the target release. Which document: with registry keys
pinned, the trigger's own `manifest`, verified with those keys, signed with an `expires`,
and with a `meta_version` no lower than the highest this agent accepted before (kept in its
state dir by `RegistryMemory`); with no keys pinned, nothing in the trigger vouches for
anything, so the agent fetches what the registry offers itself (`contract.fetch`, the same
rules as the backend's check) and ignores the trigger's copy.

`ClaimStore` keeps, in the agent's own state dir, the claim of every run id (recorded
before the trigger is unlinked, so each trigger runs at most once) and the rejected ones
with their reason.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from contract import trigger as trigger_file
from contract.registry import Document, RegistryError, parse_document, parse_version
from host_agent.clock import UTC
from host_agent.errors import AgentError, TriggerRejected
from host_agent.fsutil import read_private, write_json, write_private
from host_agent.state import private_subdir

# Fetches the registry document itself: bytes, or RegistryError.
RegistryFetcher = Callable[[], bytes]


class TriggerSwapped(AgentError):
    """The trigger changed while it was being verified; it is read again."""


@dataclass(frozen=True)
class Trigger:
    """A trigger that verified and whose release the registry offers."""

    run_id: str
    target_version: str
    git_tag: str
    git_commit: str | None
    requested_by: str
    requested_at: str
    manifest: bytes
    min_upgrade_from: str | None
    identity: tuple[int, int]  # (st_dev, st_ino) of the file that was verified
    meta_version: int | None = None  # of the document that offered it
    downtime: bool = False  # the registry entry says its migrations are not backward compatible
    downtime_seconds: int | None = None  # how long it says the downtime lasts


def parse_trigger(
    data: bytes,
    *,
    secret: str,
    registry_keys: Mapping[str, bytes],
    running_version: str,
    identity: tuple[int, int] = (0, 0),
    now: datetime | None = None,
    highest_meta_version: int | None = None,
    fetch_registry: RegistryFetcher | None = None,
) -> Trigger:
    try:
        fields = trigger_file.parse(data, secret=secret)
    except trigger_file.TriggerError as exc:
        raise TriggerRejected(str(exc)) from None
    when = now or datetime.now(UTC)
    if registry_keys or fetch_registry is None:
        body, prefix, what = fields.manifest, "manifest", "the manifest"
    else:
        prefix, what = "the registry's document", "the registry"
        try:
            body = fetch_registry()
        except RegistryError as exc:
            raise TriggerRejected(f"the registry could not be read to check the offer: {exc}") from None
    try:
        document = parse_document(
            body, keys=registry_keys, now=when, highest_meta_version=highest_meta_version
        )
    except RegistryError as exc:
        raise TriggerRejected(f"{prefix}: {exc}") from None
    if registry_keys and document.expires is None:
        raise TriggerRejected(f"{prefix}: a signed document must say when it expires ('expires')")
    target = fields.target_version
    release = document.release(target)
    if release is None:
        raise TriggerRejected(f"version {target} is not offered by {what}")
    if release.withdrawn:
        raise TriggerRejected(f"version {target} was withdrawn ({what})")
    if release.git_tag != fields.git_tag:
        raise TriggerRejected(f"git_tag {fields.git_tag!r} differs from {what}'s {release.git_tag!r}")
    if release.git_commit and release.git_commit != fields.git_commit:
        raise TriggerRejected(f"git_commit differs from the commit {what} pins")
    running = parse_version(running_version)
    if running is not None and release.parsed_version <= running:
        raise TriggerRejected(f"version {target} is not newer than the running {running_version}")
    return Trigger(
        run_id=fields.run_id,
        target_version=target,
        git_tag=fields.git_tag,
        # The registry's pin wins: the trigger may only repeat it (checked above) or add one.
        git_commit=release.git_commit or fields.git_commit,
        requested_by=fields.requested_by,
        requested_at=fields.requested_at,
        manifest=fields.manifest,
        min_upgrade_from=release.min_upgrade_from,
        identity=identity,
        meta_version=_meta_version(document),
        downtime=release.downtime,
        downtime_seconds=release.downtime_seconds,
    )


def read_trigger(
    path: Path,
    *,
    secret: str,
    registry_keys: Mapping[str, bytes],
    running_version: str,
    now: datetime | None = None,
) -> Trigger:
    """Read (no link followed, bounded) and verify a trigger file against its own manifest."""
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


def _meta_version(document: Document) -> int | None:
    return document.meta_version if document.shape in ("full", "signed") else None


def run_id_hint(data: bytes | None) -> str | None:
    """The run id a rejected trigger names, if it is a UUID."""
    if data is None:
        return None
    try:
        value = trigger_file.load_fields(data).get("run_id")
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except (trigger_file.TriggerError, ValueError):
        return None


class RegistryMemory:
    """The highest `meta_version` this agent accepted (SPEC §4.2), in its state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "registry.json"

    def highest(self) -> int | None:
        raw = read_private(self.path, limit=4096)
        if raw is None:
            return None
        try:
            value = json.loads(raw).get("highest_meta_version")
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            # Unreadable: the check would be off; refuse every document until fixed by hand.
            raise TriggerRejected(f"{self.path} is damaged; remove it to accept registry documents again")
        return value

    def accept(self, meta_version: int | None) -> None:
        if meta_version is None:
            return
        highest = self.highest()
        if highest is None or meta_version > highest:
            write_json(self.path, {"highest_meta_version": meta_version})


class ClaimStore:
    """Claimed, finished and rejected triggers, in the agent's state dir (never in the data dir)."""

    def __init__(self, state_dir: Path) -> None:
        self.processing = private_subdir(state_dir / "processing")
        self.done = private_subdir(state_dir / "done")
        self.rejected = private_subdir(state_dir / "rejected")

    def was_used(self, run_id: str) -> bool:
        return (self.processing / f"{run_id}.json").exists() or (self.done / f"{run_id}.json").exists()

    def claim(self, trigger: Trigger, data: bytes) -> Path:
        if self.was_used(trigger.run_id):
            raise TriggerRejected(f"run id {trigger.run_id} was already used")
        target = self.processing / f"{trigger.run_id}.json"
        write_private(target, data)
        return target

    def abandon(self, run_id: str) -> None:
        """The trigger was withdrawn between our claim and our unlink: it is not ours."""
        (self.processing / f"{run_id}.json").unlink(missing_ok=True)

    def reject(self, reason: str, data: bytes | None, now: datetime | None = None) -> Path:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        if data is not None:
            write_private(self.rejected / f"{stamp}.trigger", data)
        # backslashreplace: a reason quoting hostile input must not fail to be written.
        reason_path = self.rejected / f"{stamp}.reason"
        write_private(reason_path, (reason + "\n").encode("utf-8", "backslashreplace"))
        return reason_path

    def orphans(self) -> list[str]:
        return sorted(p.stem for p in self.processing.glob("*.json") if _is_uuid(p.stem))

    def finish(self, run_id: str) -> None:
        source = self.processing / f"{run_id}.json"
        if source.exists():
            os.replace(source, self.done / f"{run_id}.json")
        elif not (self.done / f"{run_id}.json").exists():
            write_private(self.done / f"{run_id}.json", b"{}\n")


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
