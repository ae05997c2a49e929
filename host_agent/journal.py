"""The journal: the current run and its step, on disk and fsynced before each step starts.

After a crash or SIGKILL the next start reads it to finish the run (SPEC §8): rolled back
when `deploy` had started, failed otherwise. A finished run's record moves to `last_run.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from host_agent.fsutil import read_json, write_json


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
    outcome: str | None = None
    cause: str | None = None


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "journal.json"
        self.last_path = state_dir / "last_run.json"

    def load(self) -> RunRecord | None:
        raw = read_json(self.path)
        if not isinstance(raw, dict):
            return None
        return RunRecord(**raw)

    def save(self, record: RunRecord) -> None:
        write_json(self.path, asdict(record))

    def finish(self, record: RunRecord) -> None:
        write_json(self.last_path, asdict(record))
        self.path.unlink(missing_ok=True)

    def last(self) -> RunRecord | None:
        raw = read_json(self.last_path)
        return RunRecord(**raw) if isinstance(raw, dict) else None
