#!/usr/bin/env python3
"""Restore an OpenTrace backup set: `restore_all.py <backup dir> [--dry-run]` (SPEC §8).

Everything is checked before anything is touched: every file's size and SHA-256 against the
set's `manifest.json` (no file may be a link), the ClickHouse schema and parts, and every
member of `data.tar.gz` (tarfile's `data` filter, and nothing that would replace what a
restore keeps); any failed check restores nothing. The data dir is then extracted into a
fresh staging directory beside it. Only then are the database (SQLite backup API, or
PostgreSQL's public schema emptied and the dump applied in one transaction; the update's own
record — runs, their events, notices, admin log — kept as it is now), the ClickHouse tables
(the engine's frozen parts attached again) and the data dir (swapped in) restored.
Stop OpenTrace first (or expect its processes to see the data change under them).
Configuration is the agent's: --project-dir, --data-dir, --preset, or their variables; without
a preset, the agent's (running, or the last one here; `local` on a `make run` install).
--dry-run runs the same checks and prints the plan: what a restore would put back, and what
it would discard.
Exit codes: 0 restored (or verified, with --dry-run), 1 damaged or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_agent import effective
from host_agent.backup import BackupError, BackupTools, check_restore, restore_all
from host_agent.config import AgentConfig, load_config
from host_agent.errors import AgentError
from host_agent.presets import make_preset

DESCRIPTIONS = {
    "database.sqlite3": "the Django database (SQLite copy)",
    "database.sql": "the Django database (PostgreSQL dump)",
    "data.tar.gz": "the rest of the data dir",
}


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def plan(config: AgentConfig, tools: BackupTools, directory: Path) -> list[str]:
    """What a restore of `directory` would put back, and what it would throw away (nothing is changed)."""
    checked = check_restore(tools, directory)
    manifest = checked.manifest
    files = cast(dict[str, dict[str, Any]], manifest["files"])  # check_restore checked the shape
    taken = str(manifest.get("created_at") or "?")
    lines = [
        f"backup set {directory.name}: OpenTrace {manifest.get('from_version')} at commit "
        f"{str(manifest.get('commit') or '?')[:12]}, taken {taken}",
        f"verified {len(files)} file(s): every size and SHA-256 matches manifest.json",
        *checked.lines[1:],
        "a restore would put back:",
    ]
    groups: dict[str, int] = {}
    for name, meta in files.items():
        what = DESCRIPTIONS.get(name) or ("the ClickHouse tables" if name.startswith("clickhouse") else name)
        groups[what] = groups.get(what, 0) + int(meta.get("size", 0))
    lines += [f"  - {what} ({_size(size)})" for what, size in groups.items()]
    lines += [
        "and would discard everything written since it was taken:",
        f"  - every change to the database since {taken} (users, settings, projects…), except the"
        " update's own record: runs, their events, notices and admin log entries are kept as they are now",
        f"  - events tracked into ClickHouse since {taken}",
        f"  - files changed in {config.data_dir} since then (except backups/ and the agent's own state)",
        "dry run: nothing restored",
        f"to restore it: stop OpenTrace, then run {sys.argv[0]} {directory} (without --dry-run)",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backup_dir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="verify the set, restore nothing")
    parser.add_argument("--project-dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--preset", choices=["compose", "local"])
    parser.add_argument("--python", help="the project's Python, for the ClickHouse import")
    args = parser.parse_args(argv)
    if not args.backup_dir.is_dir():
        print(f"restore_all: {args.backup_dir} is not a directory", file=sys.stderr)
        return 2
    flags = {
        "project_dir": args.project_dir or str(Path(__file__).resolve().parent),
        "data_dir": args.data_dir,
        "preset": args.preset,
        "python": args.python,
    }
    try:
        config = load_config(flags, os.environ, require_secret=False)
        preset = effective.preset_in_use(config, flags, os.environ)
        if preset != config.preset:
            config = load_config({**flags, "preset": preset}, os.environ, require_secret=False)
        tools = make_preset(config, lambda step, lines: None).backup_tools()
        if args.dry_run:
            # The same checks as a restore; only the set is read, nothing is changed.
            lines = plan(config, tools, args.backup_dir.resolve())
        else:
            lines = restore_all(tools, args.backup_dir.resolve())
        for line in lines:
            print(line)
    except BackupError as exc:
        print(f"restore_all: {exc}", file=sys.stderr)
        return 1
    except AgentError as exc:
        print(f"restore_all: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
