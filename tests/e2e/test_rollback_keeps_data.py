"""Rollback keeps data (SPEC §7, issue 17), through the real agent on a `make run` install.

A client posts to `POST /api/track` all along (≥ 20 requests/s of 10 events) while an update
fails after its Django and ClickHouse migrations applied. Afterwards every event the endpoint
acknowledged is in ClickHouse exactly once, and:

- reversible migrations: reverted with the new release's code, no restore;
- an irreversible ClickHouse migration: the admin was warned on the confirmation page, the
  backup was restored, and still no acknowledged event is lost;
- a release whose Django migration removes a field: refused before anything changed.

Slow (each test starts OpenTrace and updates it); run with `pytest tests/e2e`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests

from testing.e2e import IRREVERSIBLE_REASON
from testing.prober import Prober

pytestmark = pytest.mark.slow

RATE = 30  # requests per second, each of 10 events (≥ 20 asked, with margin for a loaded machine)
BATCH = 10


class TrackingLoad:
    """Posts batches of events at a steady rate from a few threads; remembers what was acknowledged."""

    def __init__(self, url: str, key: str, rate: float = RATE, threads: int = 4) -> None:
        self.url = f"{url}/api/track"
        self.key = key
        self.interval = threads / rate
        self.acknowledged: list[str] = []
        self.failed = 0
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        self.started = self.ended = 0.0

    def __enter__(self) -> TrackingLoad:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        self.ended = time.monotonic()

    @property
    def rate(self) -> float:
        return self.sent / max(self.ended - self.started, 1e-9)

    def _loop(self) -> None:
        session = requests.Session()
        next_at = time.monotonic()
        while not self.stop.is_set():
            ids = [str(uuid.uuid4()) for _ in range(BATCH)]
            now = datetime.now(UTC).isoformat()
            body = {
                "events": [
                    {"event": "pageview", "distinct_id": f"user-{i}", "timestamp": now, "event_id": event_id}
                    for i, event_id in enumerate(ids)
                ]
            }
            try:
                response = session.post(
                    self.url, json=body, headers={"X-OpenTrace-Key": self.key}, timeout=10
                )
                ok = response.status_code == 200 and response.json().get("accepted") == BATCH
            except (requests.RequestException, ValueError):
                ok = False
            with self.lock:
                self.sent += 1
                if ok:
                    self.acknowledged.extend(ids)
                else:
                    self.failed += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def tracking_key(site) -> str:
    out = site.manage(
        "shell",
        "-c",
        "from tracking.models import Project; print(Project.objects.create(name='Shop').write_key)",
    )
    return out.strip().splitlines()[-1]


def stored_counts(site) -> dict[str, int]:
    """How many rows ClickHouse holds per event_id, once the buffer is drained."""
    site.manage("flush_events", "--once", "--timeout", "90")
    out = site.manage(
        "shell",
        "-c",
        "import json; from opentrace.clickhouse import client as ch\n"
        "with ch.connect(busy_timeout=60) as c:\n"
        "    rows = c.query('SELECT toString(event_id), count() FROM opentrace.events '\n"
        "                   'GROUP BY event_id').result_rows\n"
        "print(json.dumps(dict(rows)))",
    )
    return json.loads(out.strip().splitlines()[-1])


def assert_every_acknowledged_event_stored_once(site, load: TrackingLoad) -> None:
    assert load.rate >= 20, f"the client managed {load.rate:.1f} requests/s"
    assert len(load.acknowledged) > 0
    counts = stored_counts(site)
    missing = [event_id for event_id in load.acknowledged if event_id not in counts]
    doubled = {event_id: n for event_id, n in counts.items() if n != 1}
    assert not missing, (
        f"{len(missing)} of {len(load.acknowledged)} acknowledged events are not in ClickHouse"
    )
    assert not doubled, f"stored more than once: {list(doubled.items())[:5]}"


def rollback_message(run: dict) -> str:
    return next(s["message"] for s in run["steps"] if s["name"] == "rollback")


def assert_events_complete(site, run_id: str) -> None:
    seqs = site.event_seqs(run_id)
    assert seqs == list(range(1, len(seqs) + 1)), f"events lost or out of order: {seqs}"


def test_a_healthcheck_failure_reverts_the_migrations_and_keeps_every_tracked_event(make_site):
    site = make_site()
    site.start(OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="20")
    key = tracking_key(site)
    site.release("1.2.0", breakage="healthcheck")

    # Every /healthz answer during the update, by whom: the broken release must answer none.
    healthz = Prober(f"{site.url}/healthz", 0.1, timeout=30)
    with TrackingLoad(site.url, key) as load:
        healthz.thread.start()
        run_id = site.install("1.2.0")
        run = site.wait_finished(run_id, timeout=300)
        time.sleep(2)  # and a little after it, on the old release again
        healthz.stop.set()
    healthz.thread.join()

    assert (run["status"], run["failed_step"]) == ("rolled_back", "healthcheck"), site.logs()
    # Its gunicorn workers waited for their checks and never took a connection (the gate of
    # deploy/gunicorn.conf.py): every answer came from 1.1.5, none from 1.2.0 or its failing check.
    answers = {what for _, _, what in healthz.samples}
    assert len(healthz.samples) > 50
    assert not [what for what in answers if "1.2.0" in what or "e2e" in what], sorted(answers)
    assert "200 1.1.5" in answers
    steps = [s["name"] for s in run["steps"]]
    assert steps.index("migrate") < steps.index("deploy") < steps.index("healthcheck")
    rollback = rollback_message(run)
    assert "migrations reverted" in rollback, rollback
    assert "ClickHouse: reverted 0003_e2e_marker" in rollback
    assert re.search(r"Django: reverted updates\.[0-9]{4}_e2e_release_marker", rollback)
    assert "database restored" not in rollback
    assert site.health() == (200, "1.1.5")
    assert "e2e_release_marker" not in site.tables()
    assert not [name for name in site.clickhouse_status() if "e2e_marker" in name]
    assert_events_complete(site, run_id)
    assert_every_acknowledged_event_stored_once(site, load)


def test_an_irreversible_migration_is_announced_then_rolled_back_by_a_restore_keeping_every_event(make_site):
    site = make_site()
    site.start(OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="20")
    key = tracking_key(site)
    site.release("1.2.0", breakage="healthcheck", irreversible=True)

    confirm = site.session.get(f"{site.url}/admin/updates/system/install/", timeout=10).text
    assert "A rollback of this release restores the backup" in confirm
    assert IRREVERSIBLE_REASON in confirm

    with TrackingLoad(site.url, key) as load:
        run_id = site.install("1.2.0")
        run = site.wait_finished(run_id, timeout=300)
        time.sleep(2)

    assert (run["status"], run["failed_step"]) == ("rolled_back", "healthcheck"), site.logs()
    rollback = rollback_message(run)
    assert "database restored" in rollback, rollback
    assert site.health() == (200, "1.1.5")
    assert "e2e_release_marker" not in site.tables()
    assert not [name for name in site.clickhouse_status() if "e2e_marker" in name]
    assert_events_complete(site, run_id)
    assert_every_acknowledged_event_stored_once(site, load)


def test_a_failure_at_migrate_reverts_the_django_migration_that_applied(make_site):
    site = make_site()
    site.start()
    key = tracking_key(site)
    site.release("1.2.0", breakage="migrate_clickhouse")

    with TrackingLoad(site.url, key) as load:
        run_id = site.install("1.2.0")
        run = site.wait_finished(run_id, timeout=300)

    assert (run["status"], run["failed_step"]) == ("rolled_back", "migrate"), site.logs()
    rollback = rollback_message(run)
    assert re.search(r"Django: reverted updates\.[0-9]{4}_e2e_release_marker", rollback), rollback
    assert "database restored" not in rollback
    assert "1.1.5 kept serving" in rollback
    assert "e2e_release_marker" not in site.tables()
    assert not [name for name in site.clickhouse_status() if "e2e_marker" in name]
    assert site.health() == (200, "1.1.5")
    assert_every_acknowledged_event_stored_once(site, load)


def test_a_release_that_removes_a_field_is_refused_before_anything_changed(make_site):
    site = make_site()
    site.start()
    site.release("1.2.0", breakage="remove_field")

    run_id = site.install("1.2.0")
    run = site.wait_finished(run_id)

    assert (run["status"], run["failed_step"]) == ("failed", "build"), site.logs()
    build = next(s["message"] for s in run["steps"] if s["name"] == "build")
    assert "refused: 1.2.0's migrations are not backward compatible with the running 1.1.5" in build
    assert "the Django migrations fail the checks" in build  # the linter's verdict, not a crash
    assert "migrate" not in [s["name"] for s in run["steps"] if s["state"] not in ("skipped", "pending")]
    assert "e2e_release_marker" not in site.tables()
    assert not [name for name in site.clickhouse_status() if "e2e_marker" in name]
    assert site.health() == (200, "1.1.5")
    assert site.manage("migrate_all", "--state")  # the database is as 1.1.5 left it
