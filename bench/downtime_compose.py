"""Benchmark 2b: requests through `compose`-preset updates on real containers (issue 18).

The same measurement as bench/downtime.py (three probers at 20 requests/s each through the
public port: GET /admin/login/, GET /healthz, POST /api/track) on the container stack of
tests/containers: install.sh on a git clone at v1.1.5 (podman behind the Docker API,
images from the local Debian base, HAProxy from Debian's package, ClickHouse embedded in
the app containers: see tests/containers/docker-compose.test.yml), then the real agent,
when the admin clicks "Install update", updates it to 1.1.6 broken at `migrate`, to 1.1.7
broken at `healthcheck` (both rolled back) and to 1.2.0; each release adds one Django and
one ClickHouse migration. Needs root and the container engine:

    eval "$(bash ../shared/container-engine.sh)"
    .venv/bin/python bench/downtime_compose.py
    .venv/bin/python bench/downtime_compose.py --downtime   # one update to a release declaring downtime

With `--downtime` the release's registry entry declares downtime (about 30 s) and its Django
migration takes 8 s: the agent stops the old web before it migrates and the proxy answers
every path with its maintenance page (503, Retry-After) until the new web is ready;
measured: how long each prober saw it, and the downtime the run reported
(bench/results/downtime_release_compose.json).

Not part of `bench/all.py` (it needs the engine and takes several minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.downtime import (
    DECLARED_DOWNTIME_SECONDS,
    DOWNTIME_SCENARIOS,
    REPORTED_DOWNTIME,
    SCENARIOS,
    print_update,
    prober_figures,
)
from testing.prober import Prober, track_prober


def unix(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument(
        "--downtime",
        action="store_true",
        help="one update to a release that declares downtime instead of the three updates",
    )
    args = parser.parse_args()
    if not os.environ.get("DOCKER_HOST"):
        print('needs the container engine: eval "$(bash ../shared/container-engine.sh)"', file=sys.stderr)
        return 2
    from tests.containers.site import ComposeSite

    started = time.monotonic()
    at_start = common.machine()
    timings: dict[str, float] = {}
    results: list[dict[str, Any]] = []
    trackers: list[Prober] = []
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        site = ComposeSite(Path(tmp), timings, healthcheck_timeout=120)
        try:
            install_started = time.monotonic()
            site.set_up()
            install_seconds = time.monotonic() - install_started
            key = site.write_key()
            current = "1.1.5"
            declared = DECLARED_DOWNTIME_SECONDS if args.downtime else None
            for version, breakage in DOWNTIME_SCENARIOS if args.downtime else SCENARIOS:
                site.release(version, breakage, downtime_seconds=declared)
                probers = {
                    "GET /admin/login/": Prober(
                        f"{site.url}/admin/login/", args.interval, reads_version=False
                    ),
                    "GET /healthz": Prober(f"{site.url}/healthz", args.interval),
                    "POST /api/track": track_prober(site.url, key, args.interval),
                }
                for prober in probers.values():
                    prober.thread.start()
                time.sleep(1.0)
                requested_at = time.time()
                run_id = site.install(version)
                run = site.wait_finished(run_id, timeout=900)
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
                        "seconds": s["duration_seconds"],
                        "start": unix(s["started_at"]),
                        "end": unix(s["finished_at"]),
                    }
                    for s in run["steps"]
                ]
                trackers.append(probers["POST /api/track"])
                results.append(
                    {
                        "from_version": current,
                        "to_version": version,
                        "breakage": breakage,
                        "outcome": run["status"],
                        "failed_step": run.get("failed_step"),
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
                            name: prober_figures(prober, steps, requested_at)
                            for name, prober in probers.items()
                        },
                    }
                )
                if args.downtime:
                    said = next((s["message"] for s in run["steps"] if s["name"] == "healthcheck"), "")
                    found = REPORTED_DOWNTIME.search(said or "")
                    results[-1]["declared_downtime_seconds"] = declared
                    results[-1]["reported_downtime_seconds"] = float(found.group(1)) if found else None
                    results[-1]["healthcheck_message"] = said
                print_update(results[-1])
                if args.downtime:
                    down = {name: p["longest_failure_s"] for name, p in results[-1]["probers"].items()}
                    print(
                        f"declared downtime about {declared} s; the run reported "
                        f"{results[-1]['reported_downtime_seconds']} s; the longest maintenance answer "
                        f"per prober: {down}"
                    )
                if run["status"] == "succeeded":
                    current = version
            stored = site.stored_event_ids()
        finally:
            site.down()
    for result, track in zip(results, trackers, strict=True):
        lost = len(set(track.acked) - stored)
        result["probers"]["POST /api/track"]["acknowledged"] = len(track.acked)
        result["probers"]["POST /api/track"]["acknowledged_lost"] = lost
        print(f"update to {result['to_version']}: {len(track.acked)} events acknowledged, {lost} lost")
    failed = sum(p["failed_probes"] for r in results for p in r["probers"].values())
    lost = sum(r["probers"]["POST /api/track"]["acknowledged_lost"] for r in results)
    if args.downtime:
        # The proxy's maintenance page (503, Retry-After) for every path while the old web is
        # stopped is the declared downtime; what must hold: nothing acknowledged is lost, the
        # run succeeds and reports how long it was down.
        reported = all(r.get("reported_downtime_seconds") is not None for r in results)
        common.write_results(
            "downtime_release_compose",
            {
                "_machine_at_start": at_start,
                "install_seconds": round(install_seconds, 1),
                "updates": results,
                "target": "down only for the migration (the proxy's maintenance page), reported by the run; "
                "0 acknowledged events lost",
                "acknowledged_lost": lost,
                "met": lost == 0 and reported,
            },
            started,
        )
        print(f"\nthe downtime release: {lost} acknowledged events lost")
        return 0 if lost == 0 and reported and [r["outcome"] for r in results] == ["succeeded"] else 1
    common.write_results(
        "downtime_compose",
        {
            "_machine_at_start": at_start,
            "install_seconds": round(install_seconds, 1),
            "updates": results,
            "target": "0 failed requests and 0 acknowledged events lost; update click → succeeded <= 60 s",
            "failed_requests": failed,
            "acknowledged_lost": lost,
            "met": failed == 0 and lost == 0,
        },
        started,
    )
    print(f"\nall updates: {failed} failed requests, {lost} acknowledged events lost")
    return 0 if failed == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
