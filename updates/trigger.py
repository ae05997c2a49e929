"""The trigger file: how the backend asks the host agent to install a release (SPEC §5).

`<OPENTRACE_UPDATES_DIR>/trigger` is written only after the transaction that created the
run commits, atomically: a temp file in the same directory (O_CREAT|O_EXCL|O_NOFOLLOW, mode
0640), fsync, `os.replace`, fsync of the directory. The agent claims it by renaming it to
`processing/<run_id>.json`; the backend withdraws it (cancel, expiry) by renaming it away
too, so exactly one side wins. See docs/protocol.md.

A file boundary only: it knows no model (`build` reads the run it is given), and
`updates.actions` decides when to write or withdraw.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import hmac
import json
import os
import secrets
import stat
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

from django.conf import settings

TRIGGER_NAME = "trigger"
PROCESSING_DIR = "processing"
MAX_TRIGGER_BYTES = 512 * 1024


class TriggerError(Exception):
    """The trigger cannot be written the way SPEC §5 requires (e.g. it would exceed 512 KiB)."""


def updates_dir() -> Path:
    return Path(settings.OPENTRACE_UPDATES_DIR)


def trigger_path() -> Path:
    return updates_dir() / TRIGGER_NAME


def processing_path(run_id: uuid.UUID | str) -> Path:
    return updates_dir() / PROCESSING_DIR / f"{run_id}.json"


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes the signature covers: every field but `signature`, canonical JSON."""
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(fields: dict[str, Any], secret: str) -> str:
    return hmac.new(secret.encode(), canonical(fields), hashlib.sha256).hexdigest()


def build(run: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "run_id": str(run.pk),
        "target_version": run.to_version,
        "git_tag": run.git_tag,
        "git_commit": run.git_commit or None,
        # The agent requires a non-empty name; runs always have one unless made outside the UI.
        "requested_by": run.requested_by_username or "unknown",
        "requested_at": run.requested_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "manifest": base64.b64encode(bytes(run.manifest)).decode(),
    }
    fields["signature"] = sign(fields, settings.OPENTRACE_AGENT_SECRET)
    return fields


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(fields: dict[str, Any]) -> Path:
    data = json.dumps(fields, ensure_ascii=False, indent=1).encode()
    if len(data) > MAX_TRIGGER_BYTES:
        raise TriggerError(f"the trigger would be {len(data)} bytes, over {MAX_TRIGGER_BYTES}")
    directory = updates_dir()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".trigger.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        os.fchmod(fd, 0o640)  # the umask must not widen or narrow what the agent expects
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, trigger_path())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)
    return trigger_path()


def read(path: Path | None = None) -> dict[str, Any] | None:
    """The trigger's fields, or None when there is no readable trigger.

    Reads like the agent does (host_agent.trigger): whatever sits at the path (a FIFO, a
    directory, a link, a hard-linked or oversize file, JSON nested past the parser's limit)
    answers None, never an exception or a hang, so a caller never removes a file it cannot
    prove holds its run.
    """
    path = path or trigger_path()
    try:
        # O_NONBLOCK: opening a FIFO planted as the trigger must not block cancel or expiry.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > MAX_TRIGGER_BYTES:
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_TRIGGER_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    if size > MAX_TRIGGER_BYTES:
        return None  # it grew while being read
    try:
        data = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


class Withdrawal(enum.Enum):
    WITHDRAWN = "withdrawn"  # the trigger held this run and we removed it: no agent will run it
    CLAIMED = "claimed"  # an agent renamed it into processing/: too late
    ABSENT = "absent"  # no trigger for this run (never written, or already removed)


def withdraw(run_id: uuid.UUID | str) -> Withdrawal:
    """Remove the trigger if it still holds `run_id`, racing the agent's claim fairly.

    Both sides *rename* the file; only one rename of the same file can succeed.
    """
    run_id = str(run_id)
    directory = updates_dir()
    current = read()
    if current is not None and current.get("run_id") == run_id:
        aside = directory / f".withdrawn.{run_id}.{secrets.token_hex(4)}"
        try:
            os.rename(trigger_path(), aside)
        except FileNotFoundError:
            pass  # the agent got there first
        else:
            aside.unlink(missing_ok=True)
            return Withdrawal.WITHDRAWN
    if processing_path(run_id).exists():
        return Withdrawal.CLAIMED
    return Withdrawal.ABSENT
