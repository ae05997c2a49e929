"""Benchmark 8: registry checks — a 200 and a 304 against a local server, and 1,000 installs' schedule.

A registry on 127.0.0.1 serves a full (schema 1) document of RELEASES releases with notes,
with an ETag, answering 304 to a matching If-None-Match. Each check is the real path
(`updates.checking.run_check`: fetch, parse/verify, record the check and state in
PostgreSQL); a 200 is forced by clearing the stored ETag first. The HTTP exchange alone
(`updates.registry.fetch`) is timed too.

The schedule: 1,000 installs each get the random offset `RegistryState.load()` draws (the
row is created in a transaction that is rolled back, so every install is a fresh one), and
`RegistryState.next_slot()` gives each one's next check. We count checks per second and per
minute across one interval against the no-jitter case (all at once), and the
Kolmogorov-Smirnov distance of the slots from a uniform spread.

    .venv/bin/python bench/registry.py [--checks 30] [--installs 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from testing.registry_server import iso_in

DB = "ot_bench_registry"
RELEASES = 20


def document() -> bytes:
    releases = [
        {
            "version": f"1.{minor}.{patch}",
            "channel": "stable",
            "published_at": iso_in(-timedelta(days=7)),
            "notes": f"## 1.{minor}.{patch}\n\n" + "- fixed a thing in the dashboard\n" * 20,
            "severity": "normal",
            "git_tag": f"v1.{minor}.{patch}",
            "git_commit": hashlib.sha1(f"{minor}.{patch}".encode()).hexdigest(),  # noqa: S324 - a fake commit id
            "min_upgrade_from": "1.0.0",
        }
        for minor in range(1, 3)
        for patch in range(RELEASES // 2)
    ]
    expires = iso_in(timedelta(days=365))
    body = {"schema": 1, "project": "opentrace", "meta_version": 7, "expires": expires}
    return json.dumps({**body, "releases": releases}).encode()


def serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/version.json"


def ks_uniform(points: list[float], span: float) -> float:
    ordered = sorted(p / span for p in points)
    n = len(ordered)
    return max(max((i + 1) / n - x, x - i / n) for i, x in enumerate(ordered))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=30)
    parser.add_argument("--installs", type=int, default=1000)
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()
    body = document()
    server, url = serve(body)
    with common.tempdir("registry") as tmp:
        common.recreate_database(DB)
        env = common.backend_env(tmp / "data", DB, OPENTRACE_REGISTRY_URL=url)
        common.manage(env, "migrate", "--noinput")
        common.setup_django(env)
        from django.conf import settings
        from django.db import transaction
        from django.utils import timezone

        from updates import registry
        from updates.checking import run_check
        from updates.models import RegistryCheck, RegistryState

        timings: dict[str, list[float]] = {"check 200": [], "check 304": [], "fetch 200": [], "fetch 304": []}
        run_check(RegistryCheck.Trigger.MANUAL)  # warm: connection, imports
        outcomes = Counter()
        for _ in range(args.checks):
            RegistryState.objects.update(etag="")
            t0 = time.perf_counter()
            check = run_check(RegistryCheck.Trigger.MANUAL)
            timings["check 200"].append((time.perf_counter() - t0) * 1000)
            outcomes[f"200 → {check.outcome}"] += 1
            t0 = time.perf_counter()
            check = run_check(RegistryCheck.Trigger.MANUAL)
            timings["check 304"].append((time.perf_counter() - t0) * 1000)
            outcomes[f"304 → {check.outcome}"] += 1
        etag = RegistryState.load().etag
        for _ in range(args.checks):
            t0 = time.perf_counter()
            assert registry.fetch(url).status == 200
            timings["fetch 200"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            assert registry.fetch(url, etag=etag).status == 304
            timings["fetch 304"].append((time.perf_counter() - t0) * 1000)

        # 1,000 installs: the offset each would draw on its first start, and its next slot.
        interval = settings.OPENTRACE_UPDATE_CHECK_INTERVAL
        now = timezone.now()
        slots = []
        for _ in range(args.installs):
            with transaction.atomic():
                RegistryState.objects.all().delete()
                state = RegistryState.load()
                slots.append((state.next_slot(now) - now).total_seconds())
                # One second after a slot, the next one is a whole interval later.
                first = state.next_slot(now)
                following = (state.next_slot(first + timedelta(seconds=1)) - first).total_seconds()
                assert abs(following - interval) < 1e-3, following
                transaction.set_rollback(True)
    server.shutdown()

    per_second = Counter(int(s) for s in slots)
    per_minute = Counter(int(s // 60) for s in slots)
    expected_per_minute = args.installs / (interval / 60)
    schedule = {
        "interval_s": interval,
        "installs": args.installs,
        "first_slot_s": min(slots),
        "last_slot_s": max(slots),
        "max_per_second": max(per_second.values()),
        "max_per_minute": max(per_minute.values()),
        "expected_per_minute": expected_per_minute,
        "minutes_with_a_check": len(per_minute),
        "minutes_in_interval": interval // 60,
        "ks_distance_from_uniform": ks_uniform(slots, interval),
        "ks_critical_5pct": 1.358 / args.installs**0.5,
        "no_jitter_max_per_second": args.installs,
    }
    stats = {k: common.summary(v) for k, v in timings.items()}
    print(
        common.table(
            [[k, v["n"], v["p50"], v["p95"], v["max"]] for k, v in stats.items()],
            ["ms (document " + f"{len(body) // 1024} KiB)", "n", "p50", "p95", "max"],
        )
    )
    print(f"outcomes: {dict(outcomes)}\n")
    print(
        common.table(
            [
                ["installs", args.installs],
                ["interval (s)", interval],
                ["slots span (s)", f"{min(slots):.0f} … {max(slots):.0f}"],
                [
                    "max checks in one second (no jitter: all)",
                    f"{schedule['max_per_second']} ({args.installs})",
                ],
                [
                    "max checks in one minute (mean)",
                    f"{schedule['max_per_minute']} ({expected_per_minute:.2f})",
                ],
                [
                    "KS distance from uniform (5 % critical)",
                    f"{schedule['ks_distance_from_uniform']:.4f} ({schedule['ks_critical_5pct']:.4f})",
                ],
            ],
            [f"schedule of {args.installs:,} installs", "value"],
        )
    )
    common.write_results(
        "registry",
        {
            "_machine_at_start": at_start,
            "document_bytes": len(body),
            "timings_ms": stats,
            "outcomes": dict(outcomes),
            "schedule": schedule,
            "median_check_ms": {k: statistics.median(v) for k, v in timings.items()},
        },
        started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
