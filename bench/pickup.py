"""Benchmark 1: trigger pickup latency in `local` mode.

A real backend (gunicorn, PostgreSQL) and a real agent (`python -m host_agent run --preset
local`) share one data dir, as in a local install. For each of N runs a registry check offers
the release, then the backend requests it as the Install button does
(`updates.actions.request_install`: the refusal rules, the run, the trigger file written once
the transaction commits) and we take the time until the backend *stored* the agent's
`running` event (its `received_at`).

t0 is taken just before `request_install()`, so the figure also contains the backend's own
rule checks, INSERT and trigger write (reported separately as `request_ms`): an upper bound of the time
from the rename into place. The releases asked for have no tag upstream, so each run fails
at `preflight` within a second and the next one can start (one active run at a time); what
happens after `running` does not affect pickup.

    .venv/bin/python bench/pickup.py [--runs 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = "ot_bench_pickup"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()

    with common.tempdir("pickup") as tmp:
        project = common.make_project(tmp, start="1.1.5", releases=[])
        common.recreate_database(DB)
        env = common.backend_env(project.data_dir, DB)
        common.manage(env, "migrate", "--noinput")
        common.setup_django(env)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from updates.models import UpdateEvent

        secret = settings.OPENTRACE_AGENT_SECRET
        admin = get_user_model().objects.create_superuser("bench_admin", "bench@example.com", "x" * 20)
        with common.gunicorn(env) as url:
            agent = subprocess.Popen(
                common.agent_command(project, url, "run"),
                cwd=project.checkout,
                env=common.agent_env(secret),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(2.0)  # the agent is up and watching
                latencies: list[float] = []
                request_ms: list[float] = []
                outcomes: dict[str, int] = {}
                cycle_s: list[float] = []
                agent_side: list[float] = []
                delivery: list[float] = []
                for i in range(args.runs):
                    version = f"9.0.{i}"
                    common.offer(version)  # the running agent's heartbeats say it is online
                    t0 = time.time()
                    run = common.request_install(admin)
                    request_ms.append((time.time() - t0) * 1000)
                    deadline = time.monotonic() + 30
                    while True:
                        run.refresh_from_db()
                        if run.is_terminal or time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
                    outcomes[run.status] = outcomes.get(run.status, 0) + 1
                    cycle_s.append(time.time() - t0)
                    event = UpdateEvent.objects.filter(run=run, kind="run", state="running").first()
                    if event is None:
                        print(f"run {i}: no running event ({run.status}: {run.error})", file=sys.stderr)
                        continue
                    latencies.append((event.received_at.timestamp() - t0) * 1000)
                    # `at` is the agent's clock when it wrote the event (same machine, same clock).
                    agent_side.append((event.at.timestamp() - t0) * 1000)
                    delivery.append((event.received_at - event.at).total_seconds() * 1000)
                    time.sleep(0.3)  # back to idle watching before the next trigger
            finally:
                agent.terminate()
                agent.wait(30)

    stats = common.summary(latencies)
    req = common.summary(request_ms)
    side = common.summary(agent_side)
    sent = common.summary(delivery)
    rows = [
        ("pickup (trigger → backend has running)", stats),
        ("  of which backend request() + trigger write", req),
        ("  trigger → agent wrote `running` (incl. the above)", side),
        ("  event written → backend stored it", sent),
    ]
    print(
        common.table(
            [[label, v["n"], v["p50"], v["p95"], v["max"]] for label, v in rows],
            ["ms", "n", "p50", "p95", "max"],
        )
    )
    print(f"time from request to the run's end (s): {common.summary(cycle_s)}")
    print(f"outcomes: {outcomes}; target p95 < 1000 ms: {'met' if stats['p95'] < 1000 else 'MISSED'}")
    common.write_results(
        "pickup",
        {
            "_machine_at_start": at_start,
            "pickup_ms": stats,
            "request_ms": req,
            "agent_side_ms": side,
            "delivery_ms": sent,
            "outcomes": outcomes,
            "target": "p95 < 1000 ms",
            "met": stats["p95"] < 1000,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
