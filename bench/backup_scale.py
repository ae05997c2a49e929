"""Backup and restore cost against the number of events (embedded engine): `bench/backup_scale.py [N …]`.

For each size (default 100k, 1M and 10M events) a fresh data dir gets OpenTrace's ClickHouse
schema (`clickhouse_migrate apply`) and N synthetic events, inserted by the engine itself
(`INSERT … SELECT … FROM numbers(N)`); then `python -m host_agent backup --preset local` and
`restore_all.py` run under GNU `time -v`, which reports wall time and the peak RSS of the
largest process of each (the agent, the project's Python freezing ClickHouse, the archiver).
Issue 17's figures for the row export this replaced: 10M events → 14.6 s and 4.8 GB peak RSS
to back up, 10.5 s and 5.3 GB to restore. Results: `bench/results/backup_scale.json`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PYTHON, ROOT, machine, write_results

SIZES = (100_000, 1_000_000, 10_000_000)
SEED = textwrap.dedent(
    """
    import sys
    from chdb import session
    engine = session.Session(sys.argv[1])
    engine.query(
        "INSERT INTO opentrace.events (project_id, event_id, event, distinct_id, timestamp, properties, url) "
        "SELECT 1, generateUUIDv4(), ['pageview', 'click', 'signup'][number % 3 + 1], "
        "toString(number % 50000), "
        "toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(number % 5000000), "
        "concat('{\\"n\\": ', toString(number), '}'), "
        "concat('https://example.com/p/', toString(number % 977)) "
        "FROM numbers(" + sys.argv[2] + ")"
    )
    engine.query("OPTIMIZE TABLE opentrace.events FINAL")
    print(engine.query("SELECT count() FROM opentrace.events", "TSVRaw").bytes().decode().strip())
    engine.close()
    """
)


def env_for(data_dir: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENTRACE_", "DATABASE_URL", "CLICKHOUSE_"))
    }
    env.update(
        OPENTRACE_DATA_DIR=str(data_dir),
        OPENTRACE_AGENT_SECRET="bench-agent-secret-" + "s" * 40,
        OPENTRACE_AGENT_PRESET="local",
        OPENTRACE_AGENT_PYTHON=PYTHON,
        DJANGO_SETTINGS_MODULE="opentrace.settings",
    )
    return env


def timed(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        ["/usr/bin/time", "-v", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert wall, done.stderr[-2000:]
    assert rss, done.stderr[-2000:]
    hours, minutes, seconds = wall.groups()
    return {
        "seconds": round(int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), 2),
        "peak_rss_mb": round(int(rss.group(1)) / 1024, 1),
        "stdout": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "",
    }


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure(events: int, base: Path) -> dict[str, Any]:
    data_dir = base / f"data-{events}"
    data_dir.mkdir()
    env = env_for(data_dir)
    subprocess.run(
        [PYTHON, "manage.py", "clickhouse_migrate", "apply"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    seeded = subprocess.run(
        [PYTHON, "-c", SEED, str(data_dir / "clickhouse"), str(events)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert int(seeded) == events, seeded
    parts = du(data_dir / "clickhouse" / "store")
    backup = timed(
        [PYTHON, "-m", "host_agent", "backup", "--project-dir", str(ROOT), "--data-dir", str(data_dir)], env
    )
    set_dir = Path(backup["stdout"])
    restore = timed(
        [
            PYTHON,
            "restore_all.py",
            str(set_dir),
            "--preset",
            "local",
            "--project-dir",
            str(ROOT),
            "--data-dir",
            str(data_dir),
        ],
        env,
    )
    counted = subprocess.run(
        [
            PYTHON,
            "-c",
            "import sys; from chdb import session; s = session.Session(sys.argv[1]); "
            "print(s.query('SELECT count() FROM opentrace.events', 'TSVRaw').bytes().decode().strip())",
            str(data_dir / "clickhouse"),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert int(counted) == events, counted
    result = {
        "events": events,
        "clickhouse_parts_mib": round(parts / 2**20, 1),
        "backup_seconds": backup["seconds"],
        "backup_peak_rss_mb": backup["peak_rss_mb"],
        "restore_seconds": restore["seconds"],
        "restore_peak_rss_mb": restore["peak_rss_mb"],
        "events_after_restore": int(counted),
    }
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main(argv: list[str]) -> int:
    sizes = [int(n) for n in argv] or list(SIZES)
    started = time.monotonic()
    at_start = machine()
    base = Path(tempfile.mkdtemp(prefix="opentrace-backup-scale-"))
    try:
        rows = []
        for events in sizes:
            row = measure(events, base)
            rows.append(row)
            print(
                f"{events:>11,} events  parts {row['clickhouse_parts_mib']:>7.1f} MiB  "
                f"backup {row['backup_seconds']:>6.2f} s {row['backup_peak_rss_mb']:>7.1f} MB  "
                f"restore {row['restore_seconds']:>6.2f} s {row['restore_peak_rss_mb']:>7.1f} MB",
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first, last = rows[0], rows[-1]
    verdict = {
        "backup_time_ratio": round(last["backup_seconds"] / first["backup_seconds"], 2),
        "backup_peak_rss_mb_at_largest": last["backup_peak_rss_mb"],
        "goal": "peak RSS < 300 MB at 10M, backup time at 10M within 1.5x of 100k",
    }
    print(verdict)
    write_results("backup_scale", {"_machine_at_start": at_start, "rows": rows, "verdict": verdict}, started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
