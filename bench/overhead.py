"""Benchmark 3: the agent's overhead — its total time for an update against the steps' own work.

Each repetition builds one pristine fake project (real git, the agent tests' fake app) and
copies it three times:

* A: `python -m host_agent once` with `git` and the project's Python replaced by wrappers
  that record every command line (never timed);
* B: those recorded commands replayed directly, each timed, plus the backup step's work
  (`host_agent.backup.create_backup`, which is in-process: SQLite copy, tarball, SHA-256)
  and one GET /healthz — the sum is the baseline;
* C: `python -m host_agent once` as shipped, timed (process wall time, and the run's own
  time from claiming to the final event).

The agent reports to a real backend (gunicorn, PostgreSQL) through `common.HealthProxy`,
which answers /healthz for the fake app. The fake steps take milliseconds, so the ratio
here is dominated by fixed costs; the absolute overhead in ms is the figure to carry over
to a real update (see docs/performance.md).

    .venv/bin/python bench/overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = "ot_bench_overhead"
FS, RS = "\x1f", "\x1e"


def wrapper(path: Path, tool: str, real: str, log: Path) -> str:
    path.write_text(
        f"#!/bin/sh\nprintf '%s\\037' {tool} \"$PWD\" \"$@\" >> {log}\nprintf '\\036' >> {log}\n"
        f'exec {real} "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def recorded(log: Path) -> list[tuple[str, str, list[str]]]:
    commands = []
    for record in log.read_text().split(RS):
        if not record:
            continue
        tool, cwd, *args = record.split(FS)[:-1]
        commands.append((tool, cwd, args))
    return commands


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()
    samples = []
    with common.tempdir("overhead") as tmp:
        common.recreate_database(DB)
        env = common.backend_env(tmp / "backend-data", DB)
        common.manage(env, "migrate", "--noinput")
        common.setup_django(env)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from host_agent.backup import BackupTools, create_backup
        from updates.models import UpdateEvent, UpdateRun

        admin = get_user_model().objects.create_superuser("bench_admin", "bench@example.com", "x" * 20)
        secret = settings.OPENTRACE_AGENT_SECRET
        trigger_file = Path(settings.OPENTRACE_UPDATES_DIR) / "trigger"

        def request_run(into: Path) -> UpdateRun:
            common.offer("1.2.0", heartbeat_to=url, secret=secret)
            run = common.request_install(admin)
            into.mkdir(parents=True, exist_ok=True)
            os.replace(trigger_file, into / "trigger")
            return run

        with common.gunicorn(env) as url:
            for rep in range(args.repeat):
                base = tmp / f"rep{rep}"
                pristine = common.make_project(base / "a", start="1.1.5", releases=["1.2.0"])
                shutil.copytree(base / "a", base / "b", symlinks=True)
                shutil.copytree(base / "a", base / "c", symlinks=True)

                # A: record what the agent runs.
                log = base / "commands.log"
                git_wrapper = wrapper(base / "git-wrapper", "git", shutil.which("git") or "git", log)
                py_wrapper = wrapper(base / "python-wrapper", "python", common.PYTHON, log)
                proxy_a = common.HealthProxy(url, pristine.data_dir / "served")
                run_a = request_run(pristine.updates)
                argv = common.agent_command(pristine, proxy_a.url)
                argv[argv.index("--restart-command") + 1] = f'{py_wrapper} -c "{common.RESTART}"'
                done = subprocess.run(
                    argv,
                    cwd=pristine.checkout,
                    env=common.agent_env(
                        secret, OPENTRACE_AGENT_GIT=git_wrapper, OPENTRACE_AGENT_PYTHON=py_wrapper
                    ),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                proxy_a.close()
                run_a.refresh_from_db()
                if done.returncode != 0 or run_a.status != "succeeded":
                    print(done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"recording run ended {run_a.status}")
                commands = recorded(log)

                # B: the same work, directly.
                b_root = str(base / "b")
                a_root = str(base / "a")
                b_data = Path(b_root) / "opentrace" / "data"
                child_env = {
                    **common.agent_env(secret),
                    "OPENTRACE_DATA_DIR": str(b_data),
                    "GIT_TERMINAL_PROMPT": "0",
                    "LC_ALL": "C",
                }
                direct: dict[str, float] = {}
                for tool, cwd, cmd_args in commands:
                    real = shutil.which("git") if tool == "git" else common.PYTHON
                    replay = [real or tool, *(a.replace(a_root, b_root) for a in cmd_args)]
                    t0 = time.perf_counter()
                    subprocess.run(
                        replay,
                        cwd=cwd.replace(a_root, b_root),
                        env=child_env,
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        check=False,
                    )
                    direct_key = " ".join(cmd_args[:2]) if tool == "python" else ""
                    if tool == "git":  # the subcommand, after the safe `-c name=value` options
                        words = [a for a in cmd_args if not a.startswith("-") and "=" not in a]
                        direct_key = words[0] if words else ""
                    key = f"{tool} {direct_key}"[:40]
                    direct[key] = direct.get(key, 0.0) + time.perf_counter() - t0
                tools = BackupTools(
                    data_dir=b_data,
                    project_dir=Path(b_root) / "opentrace",
                    env=child_env,
                    python_cmd=[common.PYTHON],
                    clickhouse=False,
                )
                t0 = time.perf_counter()
                create_backup(tools, from_version="1.1.5", commit=pristine.commits["1.1.5"])
                direct["backup (create_backup)"] = time.perf_counter() - t0
                proxy_b = common.HealthProxy(url, b_data / "served")
                t0 = time.perf_counter()
                with urllib.request.urlopen(proxy_b.url + "/healthz", timeout=5) as response:
                    response.read()
                direct["GET /healthz"] = time.perf_counter() - t0
                proxy_b.close()

                # C: the agent as shipped, timed.
                project_c = base / "c"  # a copy of A's pristine tree
                c_checkout, c_data = project_c / "opentrace", project_c / "opentrace" / "data"
                proxy_c = common.HealthProxy(url, c_data / "served")
                run_c = request_run(c_data / "updates")
                argv = common.agent_command(pristine, proxy_c.url)
                argv = [a.replace(a_root, str(project_c)) for a in argv]
                t0 = time.perf_counter()
                done = subprocess.run(
                    argv,
                    cwd=c_checkout,
                    env=common.agent_env(secret),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                wall = time.perf_counter() - t0
                proxy_c.close()
                run_c.refresh_from_db()
                if done.returncode != 0 or run_c.status != "succeeded":
                    print(done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"timed run ended {run_c.status}")
                ats = list(UpdateEvent.objects.filter(run=run_c).order_by("seq").values_list("at", flat=True))
                in_run = (ats[-1] - ats[0]).total_seconds()
                baseline = sum(direct.values())
                samples.append(
                    {
                        "agent_wall_s": wall,
                        "agent_in_run_s": in_run,
                        "direct_sum_s": baseline,
                        "direct": direct,
                        "commands": len(commands),
                        "events": len(ats),
                    }
                )
                print(
                    f"rep {rep}: agent {wall:.3f} s (in run {in_run:.3f} s), direct {baseline:.3f} s, "
                    f"{len(commands)} commands, {len(ats)} events",
                    flush=True,
                )

    wall = statistics.median(s["agent_wall_s"] for s in samples)
    in_run = statistics.median(s["agent_in_run_s"] for s in samples)
    baseline = statistics.median(s["direct_sum_s"] for s in samples)
    rows = [
        ["agent process (python -m host_agent once)", wall, wall - baseline, (wall / baseline - 1) * 100],
        ["agent run (claim → final event)", in_run, in_run - baseline, (in_run / baseline - 1) * 100],
        ["steps' work run directly (sum)", baseline, 0.0, 0.0],
    ]
    print(common.table(rows, ["median of " + str(len(samples)), "seconds", "overhead s", "overhead %"]))
    parts = {k: statistics.median(s["direct"].get(k, 0.0) for s in samples) for k in samples[0]["direct"]}
    print(common.table(sorted(parts.items(), key=lambda kv: -kv[1]), ["direct part", "median s"]))
    common.write_results(
        "overhead",
        {
            "_machine_at_start": at_start,
            "samples": samples,
            "median": {"agent_wall_s": wall, "agent_in_run_s": in_run, "direct_sum_s": baseline},
            "overhead_s": {"process": wall - baseline, "in_run": in_run - baseline},
            "overhead_pct": {"process": (wall / baseline - 1) * 100, "in_run": (in_run / baseline - 1) * 100},
            "direct_parts_median_s": parts,
            "target": "overhead < 3 %",
            "met": (in_run / baseline - 1) * 100 < 3,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
