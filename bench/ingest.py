"""Benchmark 4: callback ingest — what the agent API accepts on PostgreSQL.

A real backend (gunicorn as in the Dockerfile, 2 workers, DEBUG off) on a fresh PostgreSQL
database. Signed `POST /api/updates/agent/events` requests (SPEC §6) carry batches of 1, 10
and 100 `log` events of LINES lines each, for a fixed time per configuration; one client is
what the agent does (it delivers in order, one request at a time), four clients show the
headroom. Every response must be 200 with all events accepted; anything else is counted.

    .venv/bin/python bench/ingest.py [--seconds 8] [--lines 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from testing.registry_server import iso_in

DB = "ot_bench_ingest"
LINE = "Collecting static files: copying '/app/static/admin/css/base.css' (12.4 kB) ... done"


def worker(
    url: str,
    secret: str,
    run_id: str,
    batch: int,
    lines: int,
    first_seq: int,
    stride: int,
    stop_at: float,
    out: dict[str, list],
) -> None:
    seq = first_seq
    text = [f"{LINE} #{n}" for n in range(lines)]
    while time.monotonic() < stop_at:
        events = []
        for _ in range(batch):
            events.append({"seq": seq, "kind": "log", "step": "build", "lines": text, "at": iso_in()})
            seq += stride
        body = json.dumps({"run_id": run_id, "events": events}).encode()
        request = urllib.request.Request(url, data=body, headers=common.signed_headers(secret, body))
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
                status = response.status
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, {}
        except OSError as exc:
            status, answer = 0, {"error": str(exc)}
        elapsed = time.monotonic() - t0
        out["latency"].append(elapsed)
        if status == 200 and answer.get("accepted") == batch:
            out["events"].append(batch)
        else:
            out["errors"].append(status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument(
        "--manifest-kib", type=int, default=0, help="pad the run's stored registry document to this size"
    )
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts")
    parser.add_argument("--batches", default="1,10,100", help="comma-separated events per request")
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()
    rows = []
    results = []
    with common.tempdir("ingest") as tmp:
        common.recreate_database(DB)
        env = common.backend_env(tmp / "data", DB)
        common.manage(env, "migrate", "--noinput")
        common.setup_django(env)
        from django.conf import settings

        from updates.models import RunStatus, UpdateEvent, UpdateRun

        secret = settings.OPENTRACE_AGENT_SECRET
        with common.gunicorn(env) as base:
            url = base + "/api/updates/agent/events"
            manifest = common.manifest("1.2.0")
            if args.manifest_kib:
                doc = json.loads(manifest)
                doc["releases"][0]["notes"] = "n" * (args.manifest_kib * 1024)
                manifest = json.dumps(doc).encode()
            for clients in [int(c) for c in args.clients.split(",")]:
                for batch in [int(b) for b in args.batches.split(",")]:
                    # The bare run row (no refusal rules, no trigger file): no agent takes part,
                    # the clients below play it, and the stored manifest's size is the variable.
                    run, _ = UpdateRun.request(
                        user=None,
                        from_version="1.1.5",
                        to_version="1.2.0",
                        git_tag="v1.2.0",
                        git_commit=None,
                        severity="normal",
                        manifest=manifest,
                        manifest_verified=False,
                        idempotency_key=uuid.uuid4().hex,
                    )
                    run.mark_running()
                    out: dict[str, list] = {"latency": [], "events": [], "errors": []}
                    stop_at = time.monotonic() + args.seconds
                    t0 = time.monotonic()
                    threads = [
                        threading.Thread(
                            target=worker,
                            args=(url, secret, str(run.pk), batch, args.lines, 1 + k, clients, stop_at, out),
                        )
                        for k in range(clients)
                    ]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    elapsed = time.monotonic() - t0
                    stored = UpdateEvent.objects.filter(run=run).count()
                    run.mark_finished(RunStatus.SUCCEEDED)
                    accepted = sum(out["events"])
                    lat = common.summary([x * 1000 for x in out["latency"]])
                    entry = {
                        "clients": clients,
                        "batch": batch,
                        "lines_per_event": args.lines,
                        "manifest_bytes": len(manifest),
                        "requests": len(out["latency"]),
                        "seconds": round(elapsed, 2),
                        "events_accepted": accepted,
                        "events_stored": stored,
                        "events_per_s": accepted / elapsed,
                        "lines_per_s": accepted * args.lines / elapsed,
                        "latency_ms": lat,
                        "errors": out["errors"],
                    }
                    results.append(entry)
                    rows.append(
                        [
                            clients,
                            batch,
                            entry["requests"],
                            entry["events_per_s"],
                            entry["lines_per_s"],
                            lat["p50"],
                            lat["p95"],
                            len(out["errors"]),
                            "yes" if stored == accepted else f"NO ({stored})",
                        ]
                    )
    print(
        common.table(
            rows,
            [
                "clients",
                "batch",
                "requests",
                "events/s",
                "lines/s",
                "p50 ms",
                "p95 ms",
                "errors",
                "stored=acked",
            ],
        )
    )
    agent_like = [r for r in results if r["clients"] == 1]
    best_lines = max(r["lines_per_s"] for r in agent_like)
    print(f"one client (as the agent): best {best_lines:,.0f} log lines/s; target ≥ 2,000")
    common.write_results(
        "ingest" if not args.manifest_kib else f"ingest_manifest{args.manifest_kib}k",
        {
            "_machine_at_start": at_start,
            "results": results,
            "target": "≥ 2,000 log lines/s",
            "met": best_lines >= 2000,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
