"""A rollback leaves the database as it was before the update, whichever step failed after `migrate`.

Stated on the outcome (what the database holds afterwards), not on how the agent gets
there: restoring the backup today, reversing the applied migrations later (SPEC §7).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

from testing.agent import run_agent, trigger_fields, write_trigger

# The fake backend keeps its own tables (agent_*) in the same file; they are the update's record.
APP_TABLES = (
    "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'agent_%' ORDER BY name"
)


def app_database(project) -> dict[str, tuple[str, list[tuple]]]:
    """Each application table: its schema and its rows."""
    with closing(sqlite3.connect(project.data_dir / "opentrace.sqlite3")) as db:
        tables = db.execute(APP_TABLES).fetchall()
        return {
            name: (sql, db.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall())  # noqa: S608 - names from sqlite_master
            for name, sql in tables
        }


def test_a_healthcheck_failure_after_applied_migrations_leaves_the_database_as_before(project, backend):
    before = app_database(project)
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    # The restart does nothing: /healthz keeps reporting 1.1.5, so healthcheck fails once its
    # (short) timeout is up, after `migrate` applied the new release's migration.
    done = run_agent(project, backend, restart="true", OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="2")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    steps = [(e["step"], e["state"]) for e in backend.run_events(run_id) if e["kind"] == "step"]
    assert ("migrate", "succeeded") in steps
    assert ("healthcheck", "failed") in steps
    assert "migrate --noinput" in project.manage_log()  # the migration did run
    assert app_database(project) == before
    assert project.head() == project.commits["1.1.5"]
    assert project.served() == "1.1.5"


def test_a_failed_migration_leaves_the_database_as_before(project, backend):
    before = app_database(project)
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, FAKE_FAIL="migrate:1.2.0")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    assert app_database(project) == before
