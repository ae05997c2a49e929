"""A release whose registry entry declares `"downtime": true`, on a `make run` install (SPEC §7, issue 18).

Its migrations are not checked for backward compatibility, so the agent stops the old
release from serving before it migrates: the dashboard and `/healthz` answer the maintenance
page (503, `Retry-After`) while the migration runs, the tracking endpoint keeps acknowledging
into its buffer, and the new release serves after `deploy`; `healthcheck` reports how long
the dashboard was down. A downtime release that fails at `migrate` comes back on the old
release, and the maintenance page is gone.

Slow (each test starts OpenTrace and updates it); run with `pytest tests/e2e`.
"""

from __future__ import annotations

import re

import pytest
import requests

from testing.helpers import wait_for
from tests.e2e.test_rollback_keeps_data import (
    TrackingLoad,
    assert_every_acknowledged_event_stored_once,
    tracking_key,
)

pytestmark = pytest.mark.slow
SLOW_MIGRATION_SECONDS = 8  # tests/e2e/conftest.py's "slow" release: its Django migration sleeps this long


def get(site, path: str) -> requests.Response | None:
    try:
        return requests.get(f"{site.url}{path}", timeout=5, allow_redirects=False)
    except requests.RequestException:
        return None


def status(site, path: str) -> int:
    answer = get(site, path)
    return 0 if answer is None else answer.status_code


def step_message(run: dict, name: str) -> str:
    return next(s["message"] for s in run["steps"] if s["name"] == name)


def flag(site):  # type: ignore[no-untyped-def]
    return site.data_dir / "run" / "maintenance"


def test_a_downtime_release_shows_the_maintenance_page_while_it_migrates(make_site):
    site = make_site()
    site.start()
    key = tracking_key(site)
    site.release("1.2.0", breakage="slow", downtime=True, downtime_seconds=30)

    with TrackingLoad(site.url, key) as load:
        run_id = site.install("1.2.0")

        def maintenance() -> list[requests.Response]:
            page = get(site, "/admin/login/")  # (a Response is falsy for a 503: listed)
            return [page] if page is not None and page.status_code == 503 else []

        [page] = wait_for(maintenance, 150, "the maintenance page", interval=0.2)
        health = get(site, "/healthz")
        acknowledged_before = len(load.acknowledged)
        # The migration takes a few seconds more: events keep being acknowledged meanwhile.
        wait_for(lambda: len(load.acknowledged) > acknowledged_before, 5, "events acknowledged", 0.1)
        still_down = status(site, "/admin/login/")
        run = site.wait_finished(run_id)

    assert page.headers["Retry-After"] == "30"
    assert "OpenTrace is being updated" in page.text
    assert health is not None
    assert health.status_code == 503
    assert health.headers["Retry-After"] == "30"
    assert health.json()["status"] == "maintenance"
    assert still_down == 503, "the events were acknowledged after the downtime, not during it"
    assert run["status"] == "succeeded", site.logs()
    assert site.health() == (200, "1.2.0")
    assert status(site, "/admin/login/") == 200
    assert not flag(site).exists()
    assert "1.1.5 stopped serving for the downtime 1.2.0 declares" in step_message(run, "migrate")
    found = re.search(r"downtime (\d+\.\d) s \(declared: about 30 s\)", step_message(run, "healthcheck"))
    assert found, step_message(run, "healthcheck")
    assert float(found.group(1)) >= SLOW_MIGRATION_SECONDS
    assert_every_acknowledged_event_stored_once(site, load)


def test_a_downtime_release_that_fails_at_migrate_comes_back_on_the_old_release(make_site):
    site = make_site()
    site.start()
    site.release("1.2.0", breakage="migrate", downtime=True)

    run = site.wait_finished(site.install("1.2.0"))

    assert (run["status"], run["failed_step"]) == ("rolled_back", "migrate"), site.logs()
    assert site.health() == (200, "1.1.5")
    assert status(site, "/admin/login/") == 200
    assert not flag(site).exists()
    assert "e2e_release_marker" not in site.tables()
    rollback = step_message(run, "rollback")
    assert "maintenance page removed" in rollback
    assert "1.1.5 serves again after a downtime of" in rollback
