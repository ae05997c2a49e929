#!/usr/bin/env python3
"""Restore an OpenTrace backup set: `restore_all.py <backup dir> [--dry-run]` (SPEC §8).

Every file's size and SHA-256 is checked against the set's `manifest.json` before anything
is restored; a damaged set restores nothing. Then the database (SQLite backup API, or
PostgreSQL's public schema emptied and the dump applied in one transaction), the
ClickHouse tables and the rest of the data dir are restored.
Stop OpenTrace first (or expect its processes to see the data change under them).
Configuration is the agent's: --project-dir, --data-dir, --preset, or their variables.
Exit codes: 0 restored (or verified, with --dry-run), 1 damaged or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_agent.backup import BackupError, restore_all
from host_agent.config import load_config
from host_agent.errors import AgentError
from host_agent.presets import make_preset


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
        tools = make_preset(config, lambda step, lines: None).backup_tools()
        for line in restore_all(tools, args.backup_dir.resolve(), dry_run=args.dry_run):
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
