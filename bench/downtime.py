"""Benchmark 2: requests through `local`-mode updates of the real OpenTrace (issue 18: nothing stops).

A throwaway local install: the committed HEAD of this repository cloned twice (an
"upstream" tagged v<VERSION> that then gets releases from `testing.e2e.add_release`, each
with a Django and a ClickHouse migration, and the install's checkout), run by
`scripts/run_local.py` exactly as `make run` does — gunicorn, the flusher, the host agent in
`local` mode, the embedded defaults (SQLite, chdb, filesystem broker); no Celery worker.
Three updates in a row, each requested as the install view does
(`updates.actions.request_install`): one broken at `migrate` and one at `healthcheck` (both
rolled back), then the real one.

Through each, three probers send requests at a fixed rate (20/s each by default, open
loop, 5 s timeout): GET /admin/login/, GET /healthz and POST /api/track (one event with its
own event_id). A request fails on a status >= 400, no answer or a timeout. Reported per
update and prober: failed requests and their windows (with the steps they overlapped),
latencies over the run and during the swap (`deploy`, `rollback`), and for the tracking
prober how many acknowledged events are missing from ClickHouse at the end.

    .venv/bin/python bench/downtime.py [--interval 0.05] [--keep]
    .venv/bin/python bench/downtime.py --downtime   # one update to a release declaring downtime

`--downtime` updates to a release whose registry entry declares downtime (about 30 s) and
whose Django migration takes 8 s: the dashboard answers the maintenance page (its failures,
on purpose) while the old release is stopped; the tracking endpoint must fail nothing and
lose nothing, and the run's `healthcheck` step must report the downtime it measured
(bench/results/downtime_release.json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from testing.helpers import free_port, git
from testing.prober import Prober, track_prober


def answers_text(answers: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{what} x{a['probes']} ({a['first']}-{a['last']} s)" for what, a in answers.items())


def summarize(prober: Prober, steps: list[dict[str, Any]], requested_at: float, **run: Any) -> dict[str, Any]:
    """The figures of one measured update; `steps` carry unix `start`/`end`, times become relative."""
    windows = prober.windows()
    for w in windows:
        w["steps"] = [
            s["step"]
            for s in steps
            if s["start"] and s["end"] and s["start"] <= w["end"] and s["end"] >= w["start"]
        ]
    return {
        **run,
        "probes": len(prober.samples),
        "failed_probes": sum(1 for _, ok, _ in prober.samples if not ok),
        "probe_interval_s": prober.interval,
        "longest_failure_s": max((w["seconds"] for w in windows), default=0.0),
        "failure_windows": [
            {
                **w,
                "start": round(w["start"] - requested_at, 3),
                "end": round(w["end"] - requested_at, 3),
                "answers": {
                    what: {
                        "probes": n,
                        "first": round(a - requested_at, 2),
                        "last": round(b - requested_at, 2),
                    }
                    for what, (n, a, b) in w["answers"].items()
                },
            }
            for w in windows
        ],
        "steps": [
            {
                **s,
                "start": s["start"] and round(s["start"] - requested_at, 3),
                "end": s["end"] and round(s["end"] - requested_at, 3),
            }
            for s in steps
        ],
    }


# Like tests/containers: two broken releases rolled back, then the real update; each of
# them adds a Django and a ClickHouse migration (testing/e2e.py's add_release).
SCENARIOS: tuple[tuple[str, str | None], ...] = (
    ("1.1.6", "migrate"),
    ("1.1.7", "healthcheck"),
    ("1.2.0", None),
)
SWAP_STEPS = ("deploy", "rollback")
# --downtime: a release that declares downtime (its registry entry: "downtime": true), with a
# Django migration that takes 8 s. The dashboard's failures are then its maintenance page
# (503, Retry-After), on purpose; the tracking endpoint must still lose nothing.
DOWNTIME_SCENARIOS: tuple[tuple[str, str | None], ...] = (("1.2.0", "slow"),)
DECLARED_DOWNTIME_SECONDS = 30
REPORTED_DOWNTIME = re.compile(r"downtime ([0-9.]+) s")


def prober_figures(
    prober: Prober, steps: list[dict[str, Any]], requested_at: float, acked_lost: int | None = None
) -> dict[str, Any]:
    """One prober's figures through one update: failures (with the steps they overlapped),
    the rate it held, and latencies over the whole run and during the swap."""
    figures = summarize(prober, steps, requested_at)
    swap = [s for s in steps if s["step"] in SWAP_STEPS and s["start"] and s["end"]]
    figures.pop("steps")
    figures["rate_per_s"] = round(prober.rate(), 1)
    figures["latency"] = prober.latency_summary()
    figures["latency_during_swap"] = {
        s["step"]: prober.latency_summary(s["start"], s["end"] + 2.0) for s in swap
    }
    if acked_lost is not None:
        figures["acknowledged"] = len(prober.acked)
        figures["acknowledged_lost"] = acked_lost
    return figures


STORED_IDS = """
import json, sys, time
from opentrace.clickhouse import client
from tracking.buffer import get_buffer
deadline = time.monotonic() + 120
while get_buffer().backlog() and time.monotonic() < deadline:
    time.sleep(1)
with client.connect(busy_timeout=60) as c:
    rows = c.query("SELECT DISTINCT toString(event_id) FROM " + client.database() + ".events "
                   "WHERE event = 'downtime-probe'").result_rows
print(json.dumps([r[0] for r in rows]))
"""


def stored_event_ids(checkout: Path, env: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [common.PYTHON, "manage.py", "shell", "-c", STORED_IDS],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading the stored events failed: {done.stderr[-2000:]}")
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def print_update(result: dict[str, Any]) -> None:
    print(
        f"\n== update to {result['to_version']} ({result['breakage'] or 'not broken'}): {result['outcome']}"
        + (f" ({result['error']})" if result.get("error") else "")
        + ", "
        f"click → final state {result['request_to_end_seconds']:.1f} s"
    )
    print(
        common.table(
            [[s["step"], s["state"], s["seconds"], s["start"], s["end"]] for s in result["steps"]],
            ["step", "state", "seconds", "from s", "to s"],
        )
    )
    rows = []
    for name, p in result["probers"].items():
        swap = next(iter(p["latency_during_swap"].values()), {})
        rows.append(
            [
                name,
                p["probes"],
                p["rate_per_s"],
                p["failed_probes"],
                p["longest_failure_s"],
                p["latency"].get("p50_s"),
                p["latency"].get("p99_s"),
                swap.get("p99_s"),
                swap.get("max_s"),
                p.get("acknowledged_lost", ""),
            ]
        )
    print(
        common.table(
            rows,
            [
                "prober",
                "requests",
                "req/s",
                "failed",
                "longest s",
                "p50 s",
                "p99 s",
                "swap p99 s",
                "swap max s",
                "acked lost",
            ],
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between requests of one prober")
    parser.add_argument("--keep", action="store_true", help="keep the temp install for inspection")
    parser.add_argument(
        "--downtime",
        action="store_true",
        help="one update to a release that declares downtime instead of the three updates",
    )
    args = parser.parse_args()
    from testing.e2e import add_release

    started = time.monotonic()
    at_start = common.machine()
    tmp = Path(__import__("tempfile").mkdtemp(prefix="bench-downtime-"))
    upstream, checkout = tmp / "upstream", tmp / "opentrace"
    git(tmp, "clone", "-q", str(common.ROOT), str(upstream))
    current = (upstream / "VERSION").read_text().strip()
    git(upstream, "tag", "-f", f"v{current}")
    git(tmp, "clone", "-q", str(upstream), str(checkout))

    data_dir = checkout / "data"
    port = free_port()
    # The agent reads the registry itself (no keys pinned): it must find the offers there.
    registry = common.start_registry_server()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENTRACE_", "CLICKHOUSE_", "DATABASE_URL", "CELERY_", "DJANGO_"))
    }
    env.update(
        OPENTRACE_DATA_DIR=str(data_dir),
        OPENTRACE_PORT=str(port),
        OPENTRACE_RUN_WORKER="0",
        OPENTRACE_ADMIN_PASSWORD="bench-" + common.new_token(),
        OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="45",
        OPENTRACE_REGISTRY_URL=registry.url(common.REGISTRY_PATH),
    )
    log_path = tmp / "run_local.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    supervisor = subprocess.Popen(
        [common.PYTHON, "scripts/run_local.py"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    probers_by_update: list[Prober] = []
    try:
        boot = common.wait_http(base + "/healthz", timeout=150)
        print(f"install up in {boot:.1f} s at {base} (running {current})", flush=True)
        time.sleep(3)  # the agent has started watching
        common.setup_django({**env, "OPENTRACE_DATA_DIR": str(data_dir)})
        from django.contrib.auth import get_user_model

        from tracking.models import Project

        admin = get_user_model().objects.filter(is_superuser=True).first()
        key = Project.objects.create(name="downtime probe").write_key
        for version, breakage in DOWNTIME_SCENARIOS if args.downtime else SCENARIOS:
            add_release(upstream, version, breakage)
            declared = DECLARED_DOWNTIME_SECONDS if args.downtime else None
            common.offer(version, registry=registry, downtime_seconds=declared)
            probers = {
                "GET /admin/login/": Prober(base + "/admin/login/", args.interval, reads_version=False),
                "GET /healthz": Prober(base + "/healthz", args.interval),
                "POST /api/track": track_prober(base, key, args.interval),
            }
            for prober in probers.values():
                prober.thread.start()
            time.sleep(1.0)
            requested_at = time.time()
            run = common.request_install(admin)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                run.refresh_from_db()
                if run.is_terminal:
                    break
                time.sleep(0.2)
            ended_at = time.time()
            time.sleep(2.0)
            for prober in probers.values():
                prober.stop.set()
            for prober in probers.values():
                prober.thread.join()
            steps = [
                {
                    "step": s["name"],
                    "state": s["state"],
                    "seconds": s["duration"].total_seconds() if s["duration"] else None,
                    "start": s["started_at"].timestamp() if s["started_at"] else None,
                    "end": s["finished_at"].timestamp() if s["finished_at"] else None,
                }
                for s in run.step_timeline()
            ]
            probers_by_update.append(probers["POST /api/track"])
            results.append(
                {
                    "from_version": current,
                    "to_version": version,
                    "breakage": breakage,
                    "outcome": run.status,
                    "failed_step": run.failed_step,
                    "error": run.error,
                    "request_to_end_seconds": round(ended_at - requested_at, 2),
                    "steps": [
                        {
                            **s,
                            "start": s["start"] and round(s["start"] - requested_at, 3),
                            "end": s["end"] and round(s["end"] - requested_at, 3),
                        }
                        for s in steps
                    ],
                    "probers": {
                        name: prober_figures(prober, steps, requested_at) for name, prober in probers.items()
                    },
                }
            )
            if args.downtime:
                said = {s["name"]: s.get("message", "") for s in run.step_timeline()}.get("healthcheck", "")
                found = REPORTED_DOWNTIME.search(said or "")
                results[-1]["declared_downtime_seconds"] = declared
                results[-1]["reported_downtime_seconds"] = float(found.group(1)) if found else None
                results[-1]["healthcheck_message"] = said
            print_update(results[-1])
            if args.downtime:
                login = results[-1]["probers"]["GET /admin/login/"]
                print(
                    f"declared downtime about {declared} s; the run reported "
                    f"{results[-1]['reported_downtime_seconds']} s; the dashboard answered its "
                    f"maintenance page for {login['longest_failure_s']:.1f} s"
                )
            if run.status == "succeeded":
                current = version
        stored = stored_event_ids(checkout, env)
        for result, track in zip(results, probers_by_update, strict=True):
            lost = len(set(track.acked) - stored)
            result["probers"]["POST /api/track"]["acknowledged"] = len(track.acked)
            result["probers"]["POST /api/track"]["acknowledged_lost"] = lost
            print(f"update to {result['to_version']}: {len(track.acked)} events acknowledged, {lost} lost")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(90)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
        log.close()
        registry.close()
        if not results:
            print(log_path.read_text()[-4000:], file=sys.stderr)
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    if not results:
        return 1
    lost = sum(r["probers"]["POST /api/track"]["acknowledged_lost"] for r in results)
    if args.downtime:
        # The dashboard's maintenance page is the declared downtime; the tracking endpoint and
        # the update's record must lose nothing, and the run must say how long it was down.
        failed = sum(r["probers"]["POST /api/track"]["failed_probes"] for r in results)
        reported = all(r.get("reported_downtime_seconds") is not None for r in results)
        common.write_results(
            "downtime_release",
            {
                "_machine_at_start": at_start,
                "updates": results,
                "target": "the dashboard down only while it migrates (maintenance page), the run reports "
                "how long; 0 failed POST /api/track and 0 acknowledged events lost",
                "failed_requests": failed,
                "acknowledged_lost": lost,
                "met": failed == 0 and lost == 0 and reported,
            },
            started,
        )
        print(f"\nthe downtime release: {failed} failed POST /api/track, {lost} acknowledged events lost")
        succeeded = [r["outcome"] for r in results] == ["succeeded"]
        return 0 if succeeded and reported and failed == 0 and lost == 0 else 1
    failed = sum(p["failed_probes"] for r in results for p in r["probers"].values())
    common.write_results(
        "downtime",
        {
            "_machine_at_start": at_start,
            "updates": results,
            "target": "0 failed requests (status >= 500, no answer, timeout) and 0 acknowledged events lost",
            "failed_requests": failed,
            "acknowledged_lost": lost,
            "met": failed == 0 and lost == 0,
        },
        started,
    )
    print(f"\nall updates: {failed} failed requests, {lost} acknowledged events lost")
    expected = [r["outcome"] for r in results] == ["rolled_back", "rolled_back", "succeeded"]
    return 0 if expected and failed == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
