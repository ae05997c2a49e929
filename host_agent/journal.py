"""The journal: the current run and its step, on disk and fsynced before each step starts.

After a crash or SIGKILL the next start reads it to finish the run (SPEC §8): rolled back
when `deploy` had started, failed otherwise. A finished run's record moves to `last_run.json`.

What is read back is untrusted input (SPEC §5): a record whose fields are not exactly the
known ones, with the known types and formats (a UUID, 40-hex commits, the contract's step
names and run states, a backup set inside the backups folder), is refused, never acted on.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from contract.events import STEP_NAMES, STEPS, TERMINAL_RUN_STATES
from contract.registry import GIT_TAG, parse_version
from host_agent.fsutil import read_json, write_json

logger = logging.getLogger("host_agent.journal")
COMMIT = re.compile(r"[0-9a-f]{40}")
BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_MAX_TEXT = 8000


class JournalRefused(ValueError):
    """The journal on disk is not a record this agent wrote; the message says which field."""


@dataclass
class RunRecord:
    run_id: str
    target_version: str
    git_tag: str
    git_commit: str | None
    from_version: str
    from_commit: str
    from_branch: str | None
    started_at: str
    step: str | None = None
    steps_done: list[str] = field(default_factory=list)
    deploy_started: bool = False
    migrate_started: bool = False
    backup_dir: str | None = None
    # `manage.py migrate_all --state` before `migrate` (SPEC §7): what a rollback reverts to.
    migration_state: str | None = None
    requirements_changed: bool = False
    # A release that declares downtime: when `migrate` stopped the old release from serving
    # (the agent's monotonic clock, seconds), so `healthcheck` can say how long it was down
    # and every way the run ends undoes it. Absent from journals written before it existed.
    serving_stopped_at: float | None = None
    outcome: str | None = None
    cause: str | None = None


_NAMES = [f.name for f in fields(RunRecord)]
_REQUIRED = {f.name for f in fields(RunRecord) if f.default is MISSING and f.default_factory is MISSING}


def _text(value: object, name: str, *, optional: bool = False, limit: int = 200) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise JournalRefused(f"{name} is not a string of at most {limit} characters")
    return value


def validate(raw: object, backups_dir: Path | None = None) -> RunRecord:
    """A `RunRecord` from what was read back, or `JournalRefused`."""
    if not isinstance(raw, dict):
        raise JournalRefused("not a JSON object")
    unknown = set(raw) - set(_NAMES)
    missing = _REQUIRED - set(raw)
    if unknown or missing:
        raise JournalRefused(f"unknown fields {sorted(unknown)[:5]} or missing {sorted(missing)}")
    run_id = _text(raw["run_id"], "run_id")
    try:
        if str(uuid.UUID(run_id)) != run_id:
            raise ValueError
    except ValueError:
        raise JournalRefused("run_id is not a UUID") from None
    target = _text(raw["target_version"], "target_version")
    if parse_version(target) is None:
        raise JournalRefused("target_version is not a version")
    from_version = _text(raw["from_version"], "from_version")
    if from_version != "unknown" and parse_version(from_version) is None:
        raise JournalRefused("from_version is not a version")
    tag = _text(raw["git_tag"], "git_tag")
    if not GIT_TAG.fullmatch(tag or "") or ".." in (tag or ""):
        raise JournalRefused("git_tag is not a plain tag name")
    for name, optional in (("git_commit", True), ("from_commit", False)):
        value = _text(raw[name], name, optional=optional)
        if value is not None and not COMMIT.fullmatch(value) and not (name == "from_commit" and value == ""):
            raise JournalRefused(f"{name} is not 40 lowercase hex digits")
    branch = _text(raw["from_branch"], "from_branch", optional=True)
    if branch is not None and (not BRANCH.fullmatch(branch) or ".." in branch or branch.endswith(".lock")):
        raise JournalRefused("from_branch is not a branch name")
    _text(raw["started_at"], "started_at", limit=64)
    step = raw.get("step")
    if step is not None and step not in STEP_NAMES:
        raise JournalRefused("step is not one of the contract's step names")
    done = raw.get("steps_done", [])
    if not isinstance(done, list) or any(s not in STEPS for s in done) or len(set(done)) != len(done):
        raise JournalRefused("steps_done is not a list of distinct step names")
    for name in ("deploy_started", "migrate_started", "requirements_changed"):
        if not isinstance(raw.get(name, False), bool):
            raise JournalRefused(f"{name} is not true or false")
    stopped = raw.get("serving_stopped_at")
    if stopped is not None and (
        isinstance(stopped, bool) or not isinstance(stopped, int | float) or not math.isfinite(stopped)
    ):
        raise JournalRefused("serving_stopped_at is not a number of seconds")
    backup = _text(raw.get("backup_dir"), "backup_dir", optional=True, limit=4096)
    if backup is not None and backups_dir is not None:
        path = Path(backup)
        if not path.is_absolute() or path.parent != backups_dir or path.name in ("", ".", ".."):
            raise JournalRefused("backup_dir is not a backup set in the backups folder")
    outcome = raw.get("outcome")
    if outcome is not None and outcome not in TERMINAL_RUN_STATES:
        raise JournalRefused("outcome is not a terminal run state")
    _text(raw.get("cause"), "cause", optional=True, limit=_MAX_TEXT)
    return RunRecord(**raw)


class Journal:
    def __init__(self, state_dir: Path, backups_dir: Path | None = None) -> None:
        self.path = state_dir / "journal.json"
        self.last_path = state_dir / "last_run.json"
        self.backups_dir = backups_dir
        self.refused: str | None = None  # why the journal on disk was not believed

    def _load(self, path: Path) -> RunRecord | None:
        error: str | None = None
        try:
            raw = read_json(path)
        except OSError as exc:
            raw, error = None, str(exc)
        if raw is None and error is None and not path.exists():
            return None
        try:
            if error is not None:
                raise JournalRefused(error)
            return validate(raw, self.backups_dir)
        except JournalRefused as exc:
            self.refused = f"{path}: {exc}"
            logger.error("refusing %s: %s", path, exc)
            return None

    def load(self) -> RunRecord | None:
        return self._load(self.path)

    def save(self, record: RunRecord) -> None:
        write_json(self.path, asdict(record))

    def finish(self, record: RunRecord) -> None:
        write_json(self.last_path, asdict(record))
        self.path.unlink(missing_ok=True)

    def last(self) -> RunRecord | None:
        return self._load(self.last_path)
