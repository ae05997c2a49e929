"""`python3 -m host_agent.sqlite_restore [--keep-record] SCRATCH TARGET`: run as the data dir's owner.

SCRATCH is a copy of the set's SQLite file; with `--keep-record` the update's record
(`contract.record`) is first copied from TARGET into it; then SQLite's backup API writes it
over TARGET, so connections see the old database or the new one, never a mix.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from host_agent.record import sqlite_carry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep-record", action="store_true")
    parser.add_argument("scratch", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    try:
        kept = sqlite_carry(args.scratch, args.target) if args.keep_record else 0
        src = sqlite3.connect(f"file:{args.scratch}?mode=ro", uri=True, timeout=60)
        try:
            dst = sqlite3.connect(args.target, timeout=60)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        print(f"SQLite restore of {args.target} failed: {exc}", file=sys.stderr)
        return 1
    print(f"{kept} row(s) of the update's record kept" if args.keep_record else "record not kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
