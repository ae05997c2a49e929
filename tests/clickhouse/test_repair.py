"""Dirty, changed and unknown migrations block `apply`; `resume` and `mark` repair them."""

from __future__ import annotations

import pytest

from testing.clickhouse import cli, command, ledger_rows, query

pytestmark = pytest.mark.django_db

BASE = """
    CREATE TABLE IF NOT EXISTS ${db}.base${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x;
"""
# Statement 2 needs ${db}.source, which nothing creates: it fails until an operator makes it.
FAILS_AT_TWO = """
    CREATE TABLE IF NOT EXISTS ${db}.one${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x;
    CREATE TABLE IF NOT EXISTS ${db}.two${on_cluster} ENGINE = ${replicated}MergeTree() ORDER BY x
        AS SELECT x FROM ${db}.source;
    CREATE TABLE IF NOT EXISTS ${db}.three${on_cluster} (x UInt8)
        ENGINE = ${replicated}MergeTree() ORDER BY x;
"""


def tables() -> set[str]:
    return {row[0] for row in query("SELECT name FROM system.tables WHERE database = 'opentrace'")}


@pytest.fixture
def failed(engine, migrations):
    """0001 applied, 0002 failed at statement 2 of 3."""
    migrations.write("0001_base.sql", BASE)
    migrations.write("0002_fragile.sql", FAILS_AT_TWO)
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 1
    return result


def test_a_failing_statement_leaves_a_failed_migration_that_says_where(failed):
    assert "ClickHouse migration 0002_fragile failed at statement 2 of 3 (line 2)" in failed.err
    assert "UNKNOWN_TABLE" in failed.err or "source" in failed.err
    assert "manage.py clickhouse_migrate resume 0002_fragile" in failed.err
    assert "Traceback" not in failed.text
    assert tables() == {"schema_migrations", "base", "one"}
    status, done, total, _deleted, _reason = ledger_rows("0002_fragile")[-1]
    assert (status, done, total) == ("failed", 1, 3)
    assert query("SELECT error FROM opentrace.schema_migrations FINAL WHERE name = '0002_fragile'")[0][0]


def test_a_dirty_migration_blocks_apply_naming_it_the_next_statement_and_the_repairs(failed, migrations):
    migrations.write("0003_later.sql", BASE.replace("base", "later"))
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 1
    message = result.err
    assert "ClickHouse migration 0002_fragile is failed after 1 of 3 statements" in message
    assert "Next statement 2 (line 2): CREATE TABLE IF NOT EXISTS ${db}.two${on_cluster}" in message
    assert "manage.py clickhouse_migrate resume 0002_fragile" in message
    assert 'manage.py clickhouse_migrate mark 0002_fragile --applied --reason "..."' in message
    assert len(message.strip().splitlines()) == 1
    assert "later" not in tables()


def test_status_shows_the_dirty_migration_and_check_fails(failed):
    result = cli("clickhouse_migrate", "status", "--check")
    assert result.code == 1
    assert "0002_fragile  failed    1/3" in result.out
    assert "1 applied, 1 dirty" in result.out


def test_resume_finishes_a_failed_migration_from_the_failed_statement(failed):
    command("CREATE TABLE opentrace.source (x UInt8) ENGINE = MergeTree ORDER BY x")
    command("INSERT INTO opentrace.source VALUES (4)")
    result = cli("clickhouse_migrate", "resume", "0002_fragile")
    assert result.code == 0, result.text
    assert "Resuming 0002_fragile (statements 2-3 of 3)" in result.out
    assert {"one", "two", "three"} <= tables()
    assert query("SELECT x FROM opentrace.two") == [(4,)]
    assert [row[:2] for row in ledger_rows("0002_fragile")][-3:] == [
        ("running", 1),
        ("running", 2),
        ("applied", 3),
    ]
    assert cli("clickhouse_migrate", "status", "--check").code == 0


def test_resume_accepts_the_migration_number(failed):
    command("CREATE TABLE opentrace.source (x UInt8) ENGINE = MergeTree ORDER BY x")
    assert cli("clickhouse_migrate", "resume", "0002").code == 0


def test_resume_that_fails_again_stays_failed(failed):
    result = cli("clickhouse_migrate", "resume", "0002_fragile")
    assert result.code == 1
    assert "failed at statement 2 of 3" in result.err
    assert ledger_rows("0002_fragile")[-1][:2] == ("failed", 1)


def test_mark_applied_clears_a_dirty_migration(failed):
    result = cli("clickhouse_migrate", "mark", "0002_fragile", "--applied", "--reason", "created by hand")
    assert result.code == 0, result.text
    assert "0002_fragile marked applied (created by hand)" in result.out
    assert cli("clickhouse_migrate", "status", "--check").code == 0
    assert ledger_rows("0002_fragile")[-1] == ("applied", 3, 3, 0, "created by hand")


def test_mark_not_applied_lets_apply_run_it_again_from_the_start(failed):
    result = cli("clickhouse_migrate", "mark", "0002_fragile", "--not-applied", "--reason", "retry")
    assert result.code == 0, result.text
    status = cli("clickhouse_migrate", "status")
    assert "0002_fragile  pending" in status.out
    command("CREATE TABLE opentrace.source (x UInt8) ENGINE = MergeTree ORDER BY x")
    again = cli("clickhouse_migrate", "apply")
    assert again.code == 0, again.text
    assert "Applying 0002_fragile (statements 1-3 of 3)" in again.out
    history = ledger_rows("0002_fragile")
    assert ("failed", 1, 3, 1, "retry") in history  # the forgetting is kept in the history
    assert history[-1][:2] == ("applied", 3)


def test_an_interrupted_run_is_dirty_too(engine, migrations):
    migrations.write("0001_base.sql", BASE)
    assert cli("clickhouse_migrate", "apply").code == 0
    # What a SIGKILL between two statements leaves: a `running` row (see test_lock for the real kill).
    command(
        "INSERT INTO opentrace.schema_migrations "
        "(name, rev, checksum, status, statements_done, statements_total) "
        "SELECT name, rev + 1, checksum, 'running', 0, 1 FROM opentrace.schema_migrations FINAL"
    )
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 1
    assert "0001_base is running after 0 of 1 statements (its run was interrupted)" in result.err
    assert cli("clickhouse_migrate", "resume", "0001_base").code == 0
    assert cli("clickhouse_migrate", "status", "--check").code == 0


def test_a_changed_file_is_detected_and_blocks_apply(engine, migrations):
    file = migrations.write("0001_base.sql", BASE)
    assert cli("clickhouse_migrate", "apply").code == 0
    file.write_text(file.read_text() + "-- an innocent-looking edit\n")
    migrations.write("0002_next.sql", BASE.replace("base", "next"))

    status = cli("clickhouse_migrate", "status", "--check")
    assert status.code == 1
    assert "0001_base  changed" in status.out
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 1
    assert "ClickHouse migration 0001_base was applied with checksum" in result.err
    assert "applied migrations must not be edited" in result.err
    assert "next" not in tables()

    assert cli("clickhouse_migrate", "mark", "0001_base", "--applied", "--reason", "comment only").code == 0
    assert cli("clickhouse_migrate", "apply").code == 0
    assert "next" in tables()


def test_crlf_line_ends_are_not_a_change(engine, migrations):
    file = migrations.write("0001_base.sql", BASE)
    assert cli("clickhouse_migrate", "apply").code == 0
    file.write_bytes(file.read_bytes().replace(b"\n", b"\r\n"))
    assert cli("clickhouse_migrate", "status", "--check").code == 0


def test_an_applied_migration_without_a_file_is_detected(engine, migrations):
    migrations.write("0001_base.sql", BASE)
    gone = migrations.write("0002_gone.sql", BASE.replace("base", "gone"))
    assert cli("clickhouse_migrate", "apply").code == 0
    gone.unlink()

    status = cli("clickhouse_migrate", "status", "--check")
    assert status.code == 1
    assert "0002_gone  unknown" in status.out
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 1
    assert "0002_gone is recorded as applied but has no file" in result.err
    assert 'mark 0002_gone --not-applied --reason "..."' in result.err

    refused = cli("clickhouse_migrate", "mark", "0002_gone", "--applied", "--reason", "x")
    assert refused.code == 1
    assert "has no file, so it cannot be marked applied" in refused.err
    assert cli("clickhouse_migrate", "mark", "0002_gone", "--not-applied", "--reason", "downgraded").code == 0
    assert cli("clickhouse_migrate", "status", "--check").code == 0


def test_resume_refuses_a_migration_that_is_not_dirty(engine, migrations):
    migrations.write("0001_base.sql", BASE)
    assert cli("clickhouse_migrate", "apply").code == 0
    result = cli("clickhouse_migrate", "resume", "0001_base")
    assert result.code == 1
    assert "0001_base is applied, not dirty" in result.err


def test_resume_refuses_a_dirty_migration_whose_file_changed(failed, migrations):
    file = migrations.path / "0002_fragile.sql"
    file.write_text(file.read_text().replace("${db}.source", "${db}.one"))
    result = cli("clickhouse_migrate", "resume", "0002_fragile")
    assert result.code == 1
    assert "its file changed since, so it cannot be resumed" in result.err
    assert (
        cli("clickhouse_migrate", "mark", "0002_fragile", "--not-applied", "--reason", "fixed file").code == 0
    )
    assert cli("clickhouse_migrate", "apply").code == 0
    assert {"two", "three"} <= tables()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mark", "0009_nope", "--applied", "--reason", "x"], "no ClickHouse migration is named '0009_nope'"),
        (["resume", "'; DROP TABLE x; --"], "no ClickHouse migration is named"),
        (["mark", "0001_base", "--applied", "--reason", "   "], "--reason must say why"),
        (
            ["mark", "0001_base", "--applied", "--reason", "x" * 1001],
            "--reason is limited to 1000 characters",
        ),
        (["apply", "--lock-timeout", "-1"], "--lock-timeout must be between 0 and 86400"),
    ],
)
def test_hostile_arguments_are_refused_clearly(engine, migrations, args, message):
    migrations.write("0001_base.sql", BASE)
    result = cli("clickhouse_migrate", *args)
    assert result.code == 1
    assert message in result.err
    assert "base" not in tables()


def test_mark_not_applied_on_a_pending_migration_changes_nothing(engine, migrations):
    migrations.write("0001_base.sql", BASE)
    result = cli("clickhouse_migrate", "mark", "0001_base", "--not-applied", "--reason", "tidy")
    assert result.code == 0
    assert "already not applied" in result.out
    assert ledger_rows("0001_base") == []


def test_a_ledger_table_that_is_not_ours_is_a_clear_error(engine):
    command("CREATE DATABASE opentrace")
    command("CREATE TABLE opentrace.schema_migrations (id UInt64) ENGINE = MergeTree ORDER BY id")
    status = cli("clickhouse_migrate", "status")
    assert status.code == 2
    assert status.err.startswith("CommandError: could not read the migration ledger schema_migrations: ")
    assert len(status.err.strip().splitlines()) == 1
    apply = cli("clickhouse_migrate", "apply")
    assert apply.code == 1
    assert "migration ledger schema_migrations" in apply.err
    assert "events" not in tables()
