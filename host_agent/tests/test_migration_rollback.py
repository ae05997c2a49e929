"""Rollback keeps data (SPEC §7): the run's migrations are reverted with the new release's code;
the backup is restored only when one of them is irreversible. And a release whose migrations
the running one cannot live with is refused before anything changes, unless it declares downtime."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from testing.agent import manifest_body, run_agent, trigger_fields, write_trigger


def steps(backend, run_id: str) -> list[tuple[str, str]]:
    return [(e["step"], e["state"]) for e in backend.run_events(run_id) if e["kind"] == "step"]


def message(backend, run_id: str, step: str, state: str) -> str:
    return next(
        e.get("message") or ""
        for e in backend.run_events(run_id)
        if e["kind"] == "step" and (e["step"], e["state"]) == (step, state)
    )


def schema_rows(project) -> list[str] | None:
    with closing(sqlite3.connect(project.data_dir / "opentrace.sqlite3")) as db:
        if not db.execute("SELECT name FROM sqlite_master WHERE name = 'schema'").fetchall():
            return None
        return [v for (v,) in db.execute("SELECT version FROM schema")]


def test_the_state_is_saved_before_migrate_and_reverted_to_after_a_healthcheck_failure(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    # The restart does nothing, so /healthz keeps reporting 1.1.5 and healthcheck fails after
    # `migrate` applied the new release's migration.
    done = run_agent(project, backend, restart="true", OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="2")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    log = project.manage_log()
    assert (
        log.index("migrate_all --state --check-compatible")
        < log.index("migrate --noinput")
        < log.index("migrate_all --revert-to -")
    )
    assert schema_rows(project) is None  # as before the update
    rollback = message(backend, run_id, "rollback", "succeeded")
    assert rollback.startswith(
        "migrations reverted (ClickHouse: reverted nothing to revert; Django: reverted fake.1.2.0)"
    )
    assert "database restored" not in rollback
    assert project.head() == project.commits["1.1.5"]


def test_the_revert_runs_with_the_new_release_checked_out(project, backend, tmp_path):
    # The fake manage.py of 1.2.0 records the VERSION it was run from.
    project.add_release(
        "1.3.0",
        files={
            "manage.py": (project.upstream / "manage.py")
            .read_text()
            .replace(
                "cmd = sys.argv[1]",
                'cmd = sys.argv[1]\nopen(data / "ran-from", "a").write(cmd + " " + open("VERSION").read())',
            )
        },
    )
    run_id = write_trigger(project, trigger_fields("1.3.0"))

    done = run_agent(project, backend, restart="true", OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="2")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    ran = (project.data_dir / "ran-from").read_text().splitlines()
    assert "migrate_all 1.3.0" in ran
    assert ran[-1] == "migrate_all 1.3.0"  # the revert, before 1.1.5 was checked out again


def test_an_irreversible_migration_is_rolled_back_by_restoring_the_backup(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, FAKE_FAIL="migrate:1.2.0", FAKE_IRREVERSIBLE="1.2.0")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    rollback = message(backend, run_id, "rollback", "succeeded")
    assert "database restored from" in rollback
    assert schema_rows(project) is None
    assert project.db_rows() == [(1, "written before the update")]
    lines = [line for e in backend.run_events(run_id) if e["kind"] == "log" for line in e.get("lines") or []]
    assert any("is irreversible" in line for line in lines)


def test_a_failure_at_migrate_leaves_the_old_release_serving_without_a_restart(project, backend, tmp_path):
    restarts = tmp_path / "restarts"
    restart = f"sh -c 'echo restarted >> {restarts}'"
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, restart=restart, FAKE_FAIL="migrate:1.2.0")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    assert ("deploy", "started") not in steps(backend, run_id)
    assert not restarts.exists()  # `deploy` never ran, and the rollback had nothing to redeploy
    assert "1.1.5 kept serving" in message(backend, run_id, "rollback", "succeeded")
    assert project.served() == "1.1.5"


def test_a_release_whose_migrations_fail_the_linter_is_refused_before_anything_changes(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, FAKE_LINT_FAIL="django:1.2.0")

    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    refused = message(backend, run_id, "build", "failed")
    assert refused.startswith(
        "refused: 1.2.0's migrations are not backward compatible with the running 1.1.5 and its "
        "registry entry does not declare downtime; nothing was migrated"
    )
    assert "DROPPING columns" in refused
    assert ("migrate", "skipped") in steps(backend, run_id)
    # One command checked the migrations; none changed the database.
    assert [line for line in project.manage_log() if line.split()[0] in ("migrate", "migrate_all")] == [
        "migrate_all --state --check-compatible"
    ]
    assert schema_rows(project) is None
    assert project.head() == project.commits["1.1.5"]
    assert project.served() == "1.1.5"


def test_a_clickhouse_migration_that_fails_our_lint_is_refused_too(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, FAKE_LINT_FAIL="clickhouse:1.2.0")

    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    assert message(backend, run_id, "build", "failed").startswith("refused: ")
    assert schema_rows(project) is None


def test_a_release_that_declares_downtime_is_not_checked(project, backend):
    manifest = json.loads(manifest_body("1.2.0"))
    manifest["releases"][0]["downtime"] = True
    run_id = write_trigger(project, trigger_fields("1.2.0", manifest=json.dumps(manifest).encode()))

    done = run_agent(project, backend, FAKE_LINT_FAIL="django:1.2.0")

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert "declares downtime" in message(backend, run_id, "build", "succeeded")
    assert "migrate_all --state" in project.manage_log()  # the state is still saved, unchecked
    assert "--check-compatible" not in " ".join(project.manage_log())
