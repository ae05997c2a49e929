"""Benchmark: `migrate_all --revert-to` of the shipped ClickHouse migrations, by number of events.

For each row count: a fresh data dir (SQLite, the embedded engine), `migrate_all`, the
`--state` of Django alone saved (no ClickHouse migration applied), ROWS synthetic events
inserted by ClickHouse itself (`INSERT … SELECT … FROM numbers(ROWS)`), then
`manage.py migrate_all --revert-to` timed as a command (Django start-up included), beside
`migrate_all --state`, the same command's fixed cost. The down parts are DDL
(`DROP TABLE … SYNC`), so the time should not grow with the rows.

    .venv/bin/python bench/revert.py [--rows 100000 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSERT = """
from opentrace.clickhouse import client as ch
with ch.connect() as c:
    c.command(
        "INSERT INTO opentrace.events (project_id, event_id, event, distinct_id, timestamp, properties) "
        "SELECT 1, generateUUIDv4(), 'pageview', toString(number % 10000), "
        "now64(3) - toIntervalSecond(number % 86400), '{\\"n\\": 1}' FROM numbers({rows})"
    )
    print(c.command("SELECT count() FROM opentrace.events"))
"""


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def measure(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ot-bench-revert-") as tmp:
        base = Path(tmp)
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENTRACE_DATA_DIR": str(base / "data"),
            "DATABASE_URL": f"sqlite:///{base / 'db.sqlite3'}",
            "CLICKHOUSE_URL": f"chdb://{base / 'clickhouse'}",
        }
        manage(env, "migrate_all")
        state = json.loads(manage(env, "migrate_all", "--state").strip().splitlines()[-1])
        before = json.dumps({"django": state["django"], "clickhouse": []})
        began = time.perf_counter()
        stored = int(manage(env, "shell", "-c", INSERT.replace("{rows}", str(rows))).split()[-1])
        inserted = time.perf_counter() - began
        # The command's fixed cost (interpreter, Django, opening the engine), for comparison.
        began = time.perf_counter()
        manage(env, "migrate_all", "--state")
        baseline = time.perf_counter() - began
        began = time.perf_counter()
        report = manage(env, "migrate_all", "--revert-to", "-", stdin=before)
        reverted = time.perf_counter() - began
        assert "ClickHouse: reverted 0002_system_logs, 0001_events" in report, report
        return {"rows": stored, "insert_s": inserted, "state_s": baseline, "revert_s": reverted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    args = parser.parse_args()
    print(f"{'events':>12}  {'insert':>8}  {'--state':>8}  {'revert-to':>9}")
    for rows in args.rows:
        figures = measure(rows)
        print(
            f"{figures['rows']:>12,}  {figures['insert_s']:>7.1f}s  {figures['state_s']:>7.2f}s  "
            f"{figures['revert_s']:>8.2f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
