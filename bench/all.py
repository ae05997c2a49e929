"""Every benchmark in turn, then the fault-injection suite, then the Markdown figures.

    .venv/bin/python bench/all.py [--only pickup,ingest] [--skip faults]

Each script runs as its own process (one at a time: they would distort each other) and
writes bench/results/<name>.json; `bench/report.py` renders them. Exit status 1 when a
benchmark failed to run or the fault suite found a must-be-zero count that is not 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    ("pickup", []),
    ("downtime", []),
    ("overhead", []),
    ("ingest", []),
    # The agent API with a large registry document stored on the run (docs/performance.md, finding 5).
    ("ingest", ["--manifest-kib", "200", "--clients", "1", "--batches", "1,10", "--seconds", "6"]),
    ("history", []),
    ("chmigrations", []),
    ("footprint", []),
    ("registry", []),
    ("tracking", []),
    ("faults", []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated names")
    parser.add_argument("--skip", default="", help="comma-separated names")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    skip = set(filter(None, args.skip.split(",")))
    results = []
    for name, extra in ORDER:
        if (only and name not in only) or name in skip:
            continue
        print(f"\n=== {name} {' '.join(extra)} ===", flush=True)
        t0 = time.monotonic()
        code = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), *extra], cwd=HERE.parent, check=False
        ).returncode
        results.append((name, code, time.monotonic() - t0))
    print("\n=== summary ===")
    for name, code, seconds in results:
        print(f"{name:14} exit {code}  {seconds:6.1f} s{'  (over 3 minutes)' if seconds > 180 else ''}")
    print("\n=== figures (bench/report.py) ===", flush=True)
    subprocess.run([sys.executable, str(HERE / "report.py")], cwd=HERE.parent, check=False)
    return 1 if any(code != 0 for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
