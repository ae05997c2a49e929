"""Benchmark: the tracking endpoint — events/s acknowledged, then the flusher's drain.

A real backend (gunicorn as in the Dockerfile, 2 workers, DEBUG off, PostgreSQL for the
write keys) on a fresh data dir. Client threads post `POST /api/track` batches of BATCH
events with unique `event_id`s for a fixed time; every 200 is counted only if it accepted
the whole batch. Nothing flushes meanwhile, so the figure is what the endpoint alone takes
(validation, the durable append with its fsync, the answer). Then `manage.py flush_events
--once` drains the backlog into the embedded ClickHouse engine and is timed; the events in
ClickHouse must equal the events acknowledged, counted without FINAL (exactly once).

    .venv/bin/python bench/tracking.py [--seconds 10] [--clients 4] [--batch 100]
        [--buffer spool|redis://127.0.0.1:6379/9]
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = "ot_bench_tracking"
GOAL = 5000


def bodies(count: int, batch: int) -> list[bytes]:
    """Pre-built request bodies, so the clients spend their CPU on sending, not on JSON."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    out = []
    for b in range(count):
        events = [
            {
                "event": "pageview" if n % 3 else "click",
                "distinct_id": f"user-{(b * batch + n) % 5000}",
                "timestamp": now,
                "event_id": str(uuid.uuid4()),
                "properties": {"path": f"/docs/page-{n}", "referrer": "https://example.com/", "plan": "pro"},
            }
            for n in range(batch)
        ]
        out.append(json.dumps({"events": events}).encode())
    return out


def client(base: str, key: str, pool: list[bytes], lock: threading.Lock, stop_at: float, out: dict) -> None:
    host, port = urlsplit(base).hostname, urlsplit(base).port
    while time.monotonic() < stop_at:
        with lock:
            if not pool:
                return
            body = pool.pop()
        t0 = time.monotonic()
        try:
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request(
                "POST", "/api/track", body, {"X-OpenTrace-Key": key, "Content-Type": "application/json"}
            )
            response = connection.getresponse()
            answer = response.read()
            connection.close()
            status = response.status
        except OSError as exc:
            status, answer = 0, str(exc).encode()
        out["latency"].append(time.monotonic() - t0)
        if status == 200 and json.loads(answer).get("accepted") == body.count(b'"event_id"'):
            out["accepted"].append(body.count(b'"event_id"'))
        else:
            out["errors"].append(status)


def stored_events(env: dict[str, str]) -> tuple[int, int]:
    script = (
        "import django; django.setup()\n"
        "from opentrace.clickhouse import client\n"
        "with client.connect(busy_timeout=60) as ch:\n"
        "    print(ch.command('SELECT count() FROM opentrace.events'),"
        " ch.command('SELECT count() FROM opentrace.events FINAL'))\n"
    )
    out = subprocess.run(
        [common.PYTHON, "-c", script],
        cwd=common.ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "opentrace.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    plain, final = out.stdout.split()[-2:]
    return int(plain), int(final)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--buffer", default="spool", help="spool, or a redis:// URL (its list is emptied)")
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()
    with common.tempdir("tracking") as tmp:
        common.recreate_database(DB)
        env = common.backend_env(tmp / "data", DB, OPENTRACE_TRACKING_BUFFER=args.buffer)
        if args.buffer != "spool":
            import redis

            redis.Redis.from_url(args.buffer).delete(
                "opentrace:tracking:buffer", "opentrace:tracking:suspect"
            )
        common.manage(env, "migrate_all")
        key = (
            common.manage(
                env,
                "shell",
                "-c",
                "from tracking.models import Project; print(Project.objects.create(name='bench').write_key)",
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        # Enough bodies for 80,000 events/s: the pool must never be what limits the rate
        # (clients stop early when it runs out; the rate stays right, `pool_exhausted` says so).
        pool = bodies(int(80_000 * args.seconds / args.batch), args.batch)
        out: dict[str, list] = {"latency": [], "accepted": [], "errors": []}
        with common.gunicorn(env) as base:
            lock = threading.Lock()
            stop_at = time.monotonic() + args.seconds
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=client, args=(base, key, pool, lock, stop_at, out))
                for _ in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - t0
        accepted = sum(out["accepted"])
        t1 = time.monotonic()
        drained = common.manage(env, "flush_events", "--once", "--timeout", "900")
        drain_seconds = time.monotonic() - t1
        plain, final = stored_events(env)
    lat = common.summary([x * 1000 for x in out["latency"]])
    rate = accepted / elapsed
    result = {
        "_machine_at_start": at_start,
        "buffer": "spool" if args.buffer == "spool" else "redis",
        "clients": args.clients,
        "batch": args.batch,
        "seconds": round(elapsed, 2),
        "requests": len(out["latency"]),
        "events_accepted": accepted,
        "events_per_s": rate,
        "latency_ms": lat,
        "errors": out["errors"],
        "pool_exhausted": elapsed < args.seconds - 0.5,
        "drain_seconds": round(drain_seconds, 2),
        "drain_events_per_s": accepted / drain_seconds if drain_seconds else None,
        "drain_output": drained.stdout.strip(),
        "stored_rows": plain,
        "stored_final": final,
        "exactly_once": plain == final == accepted,
        "goal": f"≥ {GOAL:,} events/s in batches of 100",
        "met": rate >= GOAL and not out["errors"],
    }
    print(
        common.table(
            [
                [
                    result["buffer"],
                    args.clients,
                    args.batch,
                    len(out["latency"]),
                    rate,
                    lat["p50"],
                    lat["p95"],
                    len(out["errors"]),
                    drain_seconds,
                    result["drain_events_per_s"] or 0.0,
                    "yes" if result["exactly_once"] else f"NO ({plain}/{final}/{accepted})",
                ]
            ],
            [
                "buffer",
                "clients",
                "batch",
                "requests",
                "events/s",
                "p50 ms",
                "p95 ms",
                "errors",
                "drain s",
                "drain ev/s",
                "stored once",
            ],
        )
    )
    print(f"goal ≥ {GOAL:,} events/s: {'met' if result['met'] else 'NOT met'}")
    name = "tracking" if args.buffer == "spool" else "tracking_redis"
    common.write_results(name, result, started)
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
