"""Benchmark 2b: the downtime window and total time of a `compose`-preset update on real containers.

The same measurement as bench/downtime.py (a prober on /healthz every 50 ms through the
whole update), on the container stack of tests/containers: install.sh on a git clone at
v1.1.5 (podman behind the Docker API, images from the local Debian base, ClickHouse
embedded in the app containers: see tests/containers/docker-compose.test.yml), then the
real agent updates it to 1.2.0 (one Django and one ClickHouse migration) when the admin
clicks "Install update". Needs root and the container engine:

    eval "$(bash ../shared/container-engine.sh)"
    .venv/bin/python bench/downtime_compose.py

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.downtime import Prober, print_result, publish, summarize


def unix(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    if not os.environ.get("DOCKER_HOST"):
        print('needs the container engine: eval "$(bash ../shared/container-engine.sh)"', file=sys.stderr)
        return 2
    from tests.containers.site import ComposeSite

    started = time.monotonic()
    at_start = common.machine()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        site = ComposeSite(Path(tmp), timings, healthcheck_timeout=120)
        try:
            install_started = time.monotonic()
            site.set_up()
            install_seconds = time.monotonic() - install_started
            site.release("1.2.0")
            prober = Prober(f"{site.url}/healthz", args.interval)
            # A page that needs no ClickHouse: is the web port serving at all?
            page = Prober(f"{site.url}/admin/login/", args.interval, reads_version=False)
            prober.thread.start()
            page.thread.start()
            time.sleep(1.0)
            requested_at = time.time()
            run_id = site.install("1.2.0")
            run = site.wait_finished(run_id, timeout=900)
            ended_at = time.time()
            time.sleep(2.0)
            for each in (prober, page):
                each.stop.set()
                each.thread.join()
        finally:
            site.down()
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
    update = unix(run["finished_at"]) - unix(run["started_at"]) if run["finished_at"] else None
    result = summarize(
        prober,
        steps,
        requested_at,
        from_version="1.1.5",
        to_version="1.2.0",
        outcome=run["status"],
        error=run["error"],
        update_seconds=update,
        request_to_end_seconds=ended_at - requested_at,
        install_seconds=install_seconds,
    )
    login = summarize(page, steps, requested_at)
    result["login_page"] = {
        key: login[key] for key in ("probes", "failed_probes", "longest_failure_s", "failure_windows")
    }
    print_result(result)
    print(
        f"/admin/login/: {login['probes']} probes, {login['failed_probes']} failed; "
        f"longest failure {login['longest_failure_s']:.2f} s"
    )
    return publish("downtime_compose", result, at_start, started)


if __name__ == "__main__":
    sys.exit(main())
