"""The whole update, for real: admin click → trigger → agent → new release serving (issue 5).

Slow (each test starts OpenTrace and updates it); run with `pytest tests/e2e`.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow
STEPS = ["preflight", "backup", "fetch", "build", "migrate", "deploy", "healthcheck"]


def mark_data(site) -> None:
    """Data written before any update; it must survive every outcome."""
    with site.db() as db:
        db.execute("UPDATE auth_user SET first_name = 'kept' WHERE username = 'admin'")


def assert_data_intact(site) -> None:
    with site.db() as db:
        assert db.execute("SELECT first_name FROM auth_user WHERE username = 'admin'").fetchone() == ("kept",)


def assert_events_complete(site, run_id: str) -> None:
    seqs = site.event_seqs(run_id)
    assert seqs == list(range(1, len(seqs) + 1)), f"events lost or out of order: {seqs}"


def test_an_update_installed_from_the_admin_succeeds_and_reports_every_event(make_site):
    site = make_site()
    site.start()
    mark_data(site)
    site.release("1.2.0")

    run_id = site.install("1.2.0")
    run = site.wait_finished(run_id)

    assert run["status"] == "succeeded", site.logs()
    assert site.health() == (200, "1.2.0")
    assert [s["name"] for s in run["steps"]] == STEPS
    assert_events_complete(site, run_id)
    assert "e2e_release_marker" in site.tables()
    assert [state for name, state in site.clickhouse_status().items() if "e2e_marker" in name] == ["applied"]
    assert_data_intact(site)
    assert [b.name.endswith("-1.1.5") for b in (site.data_dir / "backups").iterdir()] == [True]


def test_failed_updates_leave_the_old_release_serving_with_its_data(make_site):
    site = make_site()
    site.start(OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="25")
    mark_data(site)

    # Broken at build: nothing was stopped, the run simply fails.
    site.release("1.2.0", breakage="build")
    run_id = site.install("1.2.0")
    run = site.wait_finished(run_id)
    assert (run["status"], run["failed_step"]) == ("failed", "build"), site.logs()
    assert site.health() == (200, "1.1.5")
    assert_events_complete(site, run_id)

    # Broken at migrate: the database is restored from the run's backup and 1.1.5 redeployed.
    site.release("1.2.1", breakage="migrate")
    run_id = site.install("1.2.1")
    run = site.wait_finished(run_id)
    assert (run["status"], run["failed_step"]) == ("rolled_back", "migrate"), site.logs()
    assert site.health() == (200, "1.1.5")
    assert "e2e_release_marker" not in site.tables()
    assert_events_complete(site, run_id)
    assert_data_intact(site)

    # Broken at healthcheck: the new release never reports healthy, so it is rolled back.
    site.release("1.2.2", breakage="healthcheck")
    run_id = site.install("1.2.2")
    run = site.wait_finished(run_id)
    assert (run["status"], run["failed_step"]) == ("rolled_back", "healthcheck"), site.logs()
    assert site.health() == (200, "1.1.5")
    assert "e2e_release_marker" not in site.tables()
    # Both migrations had run; the rollback reverted them (ClickHouse's tables and ledger too).
    assert not [name for name in site.clickhouse_status() if "e2e_marker" in name]
    assert_events_complete(site, run_id)
    assert_data_intact(site)


def test_an_agent_killed_after_deploy_rolls_the_run_back_when_it_restarts(make_site):
    site = make_site()
    site.start(OPENTRACE_AGENT_CRASH_AT="migrate")  # SIGKILL as `migrate` starts
    mark_data(site)
    site.release("1.2.0")

    run_id = site.install("1.2.0")
    assert site.agent.wait(timeout=180) == -9, site.logs()
    site.start_agent()
    run = site.wait_finished(run_id)

    assert (run["status"], run["failed_step"]) == ("rolled_back", "migrate"), site.logs()
    assert site.health() == (200, "1.1.5")
    assert_events_complete(site, run_id)
    assert_data_intact(site)
    # Claimed once, finished once: nothing is left that could run it again.
    assert (site.data_dir / "agent" / "done" / f"{run_id}.json").exists()  # the agent's state dir
    assert not (site.data_dir / "updates" / "trigger").exists()
    assert [s["state"] for s in run["steps"] if s["name"] == "rollback"] == ["succeeded"]
