"""Benchmark 5: the Update history at scale on PostgreSQL.

Runs and events are bulk-inserted server side (`INSERT … SELECT generate_series`): first
SMALL runs, then up to RUNS runs, each with EVENTS events (a `running` event, the seven
steps started/succeeded, log events of 3 lines, the final `succeeded`). At both sizes a
superuser renders the Update history changelist and one run's change page through Django's
full request stack (in process, DEBUG off); we take the median render time and the number of
SQL queries. The query count must be the same at both sizes.

    .venv/bin/python bench/history.py [--runs 10000] [--events 200] [--renders 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DB = "ot_bench_history"
SMALL = 100
STEPS = ("preflight", "backup", "fetch", "build", "migrate", "deploy", "healthcheck")

RUNS_SQL = """
INSERT INTO updates_updaterun (
    id, from_version, to_version, git_tag, git_commit, severity, status, requested_by_id,
    requested_by_username, requested_at, started_at, finished_at, failed_step, error,
    rollback_cause, idempotency_key, manifest, manifest_verified, last_event_at)
SELECT md5('run' || i)::uuid, '1.' || (i / 100) || '.' || (i %% 100),
       '1.' || (i / 100) || '.' || (i %% 100 + 1),
       'v1.' || (i / 100) || '.' || (i %% 100 + 1), NULL, 'normal',
       (ARRAY['succeeded', 'failed', 'rolled_back', 'expired', 'cancelled'])[1 + i %% 5],
       %(user)s, 'bench_admin', now() - (i || ' hours')::interval,
       now() - (i || ' hours')::interval + interval '5 seconds',
       now() - (i || ' hours')::interval + interval '95 seconds',
       CASE WHEN i %% 5 IN (1, 2) THEN 'migrate' ELSE '' END,
       CASE WHEN i %% 5 = 1 THEN 'migrate failed: injected' ELSE '' END, '',
       md5('key' || i), convert_to('{"version": "1.2.0"}', 'UTF8'), false,
       now() - (i || ' hours')::interval + interval '95 seconds'
FROM generate_series(%(first)s, %(last)s) AS i
"""

EVENTS_SQL = """
INSERT INTO updates_updateevent (run_id, seq, kind, step, state, message, lines, at, received_at)
SELECT r.id, s,
       CASE WHEN s = 1 OR s = %(events)s THEN 'run' WHEN s <= 15 THEN 'step' ELSE 'log' END,
       CASE WHEN s BETWEEN 2 AND 15 THEN (%(steps)s::text[])[(s - 2) / 2 + 1]
            WHEN s > 15 AND s < %(events)s THEN 'build' ELSE '' END,
       CASE WHEN s = 1 THEN 'running' WHEN s = %(events)s THEN 'succeeded'
            WHEN s BETWEEN 2 AND 15 THEN (ARRAY['started', 'succeeded'])[s %% 2 + 1] ELSE '' END,
       CASE WHEN s BETWEEN 2 AND 15 AND s %% 2 = 1 THEN 'done' ELSE '' END,
       CASE WHEN s > 15 AND s < %(events)s THEN jsonb_build_array(
            'Collecting static files line ' || s || ' of run ' || left(r.id::text, 8),
            'copying /app/static/admin/css/base.css (12.4 kB)',
            'done in 0.0' || (s %% 10) || ' s') ELSE '[]'::jsonb END,
       r.requested_at + (s || ' seconds')::interval,
       r.requested_at + (s || ' seconds')::interval
FROM (SELECT * FROM updates_updaterun WHERE id = ANY(%(ids)s) ORDER BY id) AS r
CROSS JOIN LATERAL generate_series(1, %(events)s) AS s
"""


def insert(first: int, last: int, events: int, user_id: int) -> float:
    from django.db import connection

    t0 = time.monotonic()
    ids = [_uuid(i) for i in range(first, last + 1)]
    with connection.cursor() as cursor:
        # Bulk load: rows are consistent by construction, so the FK triggers are skipped
        # (superuser-only setting, this session only) and commits are not waited for.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute(RUNS_SQL, {"user": user_id, "first": first, "last": last})
        for start in range(0, len(ids), 1000):
            cursor.execute(
                EVENTS_SQL, {"events": events, "steps": list(STEPS), "ids": ids[start : start + 1000]}
            )
        cursor.execute("RESET session_replication_role")
        cursor.execute("RESET synchronous_commit")
        cursor.execute("ANALYZE updates_updaterun")
        cursor.execute("ANALYZE updates_updateevent")
    return time.monotonic() - t0


def _uuid(i: int) -> str:
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5(f"run{i}".encode()).hexdigest()))  # noqa: S324 - ids, not security


def measure(client, url: str, renders: int) -> dict[str, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: templates, caches
    times = []
    queries = []
    size = 0
    for _ in range(renders):
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries.append(len(captured.captured_queries))
        size = len(response.content)
    return {
        "median_ms": statistics.median(times),
        "p95_ms": common.pct(times, 95),
        "queries": sorted(set(queries)),
        "bytes": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--renders", type=int, default=15)
    args = parser.parse_args()
    started = time.monotonic()
    at_start = common.machine()
    with common.tempdir("history") as tmp:
        common.recreate_database(DB)
        env = common.backend_env(tmp / "data", DB)
        common.manage(env, "migrate", "--noinput")
        common.setup_django(env)
        # DEBUG off wants collectstatic's manifest; asset URLs are not what we measure, so the
        # plain storage stands in rather than writing into the shared checkout's staticfiles/.
        from django.conf import settings
        from django.test.utils import override_settings

        override_settings(
            STORAGES={
                **settings.STORAGES,
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            }
        ).enable()
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.urls import reverse

        admin = get_user_model().objects.create_superuser("bench_admin", "bench@example.com", "x" * 20)
        client = Client()
        client.force_login(admin)
        changelist = reverse("admin:updates_updaterun_changelist")
        sizes = {}
        inserted = 0
        insert_s = 0.0
        for total in (min(SMALL, args.runs), args.runs):
            if total > inserted:
                insert_s += insert(inserted + 1, total, args.events, admin.pk)
                inserted = total
            change = reverse("admin:updates_updaterun_change", args=[_uuid(total // 2 or 1)])
            sizes[total] = {
                "changelist": measure(client, changelist, args.renders),
                "changelist_filtered": measure(client, changelist + "?status__exact=failed", args.renders),
                "change_page": measure(client, change, args.renders),
            }
            print(f"{total} runs measured", flush=True)
    rows = []
    for total, pages in sizes.items():
        for page, m in pages.items():
            rows.append(
                [total, total * args.events, page, m["median_ms"], m["p95_ms"], m["queries"], m["bytes"]]
            )
    print(common.table(rows, ["runs", "events", "page", "median ms", "p95 ms", "queries", "bytes"]))
    small, large = sizes[min(sizes)], sizes[max(sizes)]
    constant = all(small[p]["queries"] == large[p]["queries"] for p in small)
    fast = all(m["median_ms"] < 200 for m in large.values())
    print(f"inserted {inserted} runs x {args.events} events in {insert_s:.1f} s")
    print(f"query count independent of rows: {constant}; every page median < 200 ms: {fast}")
    common.write_results(
        "history",
        {
            "_machine_at_start": at_start,
            "runs": inserted,
            "events_per_run": args.events,
            "insert_seconds": insert_s,
            "pages": {str(k): v for k, v in sizes.items()},
            "queries_constant": constant,
            "target": "median < 200 ms; query count independent of rows",
            "met": constant and fast,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
