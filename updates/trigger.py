"""The trigger file: how the backend asks the host agent to install a release (SPEC §5).

`<OPENTRACE_UPDATES_DIR>/trigger` is written only after the transaction that created the
run commits, atomically (`contract.trigger.write`: a temp file in the same directory created
with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0640, fsync, `os.replace`, fsync of the directory),
after an empty `issued/<run_id>` marker. The agent claims it by recording the claim in its
own state dir and unlinking the trigger (it creates or renames nothing in the data dir, SPEC
§5); the backend withdraws it (cancel, expiry) by renaming it aside. So a requested run whose
trigger was issued and is gone was taken by the agent. See docs/protocol.md.

A file boundary only: it knows no model (`build` reads the run it is given), and
`updates.actions` decides when to write or withdraw.
"""

from __future__ import annotations

import base64
import enum
import os
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

from django.conf import settings

from contract import trigger as trigger_file
from contract.events import TriggerFile
from contract.trigger import TriggerError

TRIGGER_NAME = trigger_file.NAME
ISSUED_DIR = "issued"


def updates_dir() -> Path:
    return Path(settings.OPENTRACE_UPDATES_DIR)


def trigger_path() -> Path:
    return updates_dir() / TRIGGER_NAME


def issued_path(run_id: uuid.UUID | str) -> Path:
    """The backend's own note that it wrote this run's trigger (the agent never looks at it)."""
    return updates_dir() / ISSUED_DIR / str(run_id)


def build(run: Any) -> TriggerFile:
    return trigger_file.sign(
        {
            "run_id": str(run.pk),
            "target_version": run.to_version,
            "git_tag": run.git_tag,
            "git_commit": run.git_commit or None,
            # The agent requires a non-empty name; runs always have one unless made outside the UI.
            "requested_by": run.requested_by_username or "unknown",
            "requested_at": run.requested_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "manifest": base64.b64encode(bytes(run.manifest)).decode(),
        },
        settings.OPENTRACE_AGENT_SECRET,
    )


def write(fields: Mapping[str, object]) -> Path:
    run_id = fields.get("run_id")
    if isinstance(run_id, str):
        marker = issued_path(run_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return trigger_file.write(updates_dir(), fields)


def read(path: Path | None = None) -> dict[str, Any] | None:
    """The trigger's fields, or None when there is no readable trigger.

    Reads like the agent does (`contract.trigger`): whatever sits at the path (a FIFO, a
    directory, a link, a hard-linked or oversize file, JSON nested past the parser's limit)
    answers None, never an exception or a hang, so a caller never removes a file it cannot
    prove holds its run.
    """
    try:
        return trigger_file.load_fields(trigger_file.read(path or trigger_path()).data)
    except (OSError, TriggerError):
        return None


class Withdrawal(enum.Enum):
    WITHDRAWN = "withdrawn"  # the trigger held this run and we removed it: no agent will run it
    CLAIMED = "claimed"  # an agent took it (its claim is in the agent's own state): too late
    ABSENT = "absent"  # no trigger for this run (never written, or already removed)


def withdraw(run_id: uuid.UUID | str) -> Withdrawal:
    """Remove the trigger if it still holds `run_id`, racing the agent's claim fairly.

    The agent unlinks the file it claimed, we rename it aside: only one of the two can
    succeed on the same file.
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
            issued_path(run_id).unlink(missing_ok=True)
            return Withdrawal.WITHDRAWN
    if issued_path(run_id).exists():
        return Withdrawal.CLAIMED  # issued and gone: only the agent removes it
    return Withdrawal.ABSENT
