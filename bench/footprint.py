"""Benchmark 7: the idle agent's footprint — RSS and CPU while it watches for a trigger.

`python -m host_agent run --preset local` on a fake project, reporting to a real backend
(gunicorn, PostgreSQL) so its heartbeats (every 30 s) are real requests. After a settling
period we sample /proc/<pid> once a second for SECONDS: VmRSS, and utime+stime (all
threads) at both ends for the CPU share. No trigger arrives: this is the idle state.

    .venv/bin/python bench/footprint.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = "ot_bench_footprint"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()
    with common.tempdir("footprint") as tmp:
        project = common.make_project(tmp, start="1.1.5", releases=["1.2.0"])
        common.recreate_database(DB)
        env = common.backend_env(project.data_dir, DB)
        common.manage(env, "migrate", "--noinput")
        secret = common.agent_secret(project.data_dir)
        with common.gunicorn(env) as url:
            agent = subprocess.Popen(
                common.agent_command(project, url, "run"),
                cwd=project.checkout,
                env=common.agent_env(secret),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(args.settle)
                rss: list[int] = []
                cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
                while time.monotonic() - t0 < args.seconds:
                    rss.append(status(agent.pid)["VmRSS"])
                    time.sleep(1.0)
                cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
                final = status(agent.pid)
                alive = agent.poll() is None
            finally:
                agent.terminate()
                agent.wait(30)
    cpu_pct = (cpu1 - cpu0) / (t1 - t0) * 100
    result = {
        "seconds": round(t1 - t0, 1),
        "cpu_seconds": cpu1 - cpu0,
        "cpu_percent": cpu_pct,
        "rss_kib": {"min": min(rss), "median": statistics.median(rss), "max": max(rss)},
        "peak_rss_kib": final.get("VmHWM"),
        "threads": final.get("Threads"),
        "alive": alive,
    }
    print(
        common.table(
            [
                ["CPU over the window", f"{cpu1 - cpu0:.2f} s", f"{cpu_pct:.3f} %"],
                [
                    "RSS median / max",
                    f"{result['rss_kib']['median'] / 1024:.1f} MiB",
                    f"{max(rss) / 1024:.1f} MiB",
                ],
                ["peak RSS (VmHWM, incl. start-up)", f"{(final.get('VmHWM') or 0) / 1024:.1f} MiB", ""],
                ["threads", final.get("Threads"), ""],
            ],
            [f"idle agent, {t1 - t0:.0f} s", "value", ""],
        )
    )
    print(f"target idle CPU < 1 %: {'met' if cpu_pct < 1 else 'MISSED'}")
    common.write_results(
        "footprint",
        {"_machine_at_start": at_start, **result, "target": "idle CPU < 1 %", "met": cpu_pct < 1},
        started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
