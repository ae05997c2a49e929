"""`clickhouse_migrate lint`: the shipped migrations pass, and each bad form is refused."""

from __future__ import annotations

import pytest

from opentrace.clickhouse.catalog import DEFAULT_DIRECTORY, load_migrations
from opentrace.clickhouse.lint import lint
from testing.clickhouse import cli

GOOD = [
    "CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x",
    "CREATE DATABASE IF NOT EXISTS ${db}${on_cluster}",
    "ALTER TABLE ${db}.t${on_cluster} ADD COLUMN IF NOT EXISTS y String DEFAULT ''",
    "ALTER TABLE ${db}.t${on_cluster} ADD INDEX IF NOT EXISTS y_idx y TYPE bloom_filter GRANULARITY 4",
    "ALTER TABLE ${db}.t${on_cluster} COMMENT COLUMN IF EXISTS y 'DROP TABLE is only words here'",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.mv${on_cluster} TO ${db}.t AS SELECT 1 AS x",
    "INSERT INTO ${db}.t (x) VALUES (1)",
    "-- ON CLUSTER in a comment is fine\nSELECT 1",
]

BAD = [
    ("CREATE TABLE ${db}.t${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x",
     "CREATE TABLE without IF NOT EXISTS"),
    ("CREATE DATABASE ${db}${on_cluster}", "CREATE DATABASE without IF NOT EXISTS"),
    ("ALTER TABLE ${db}.t${on_cluster} ADD COLUMN y String", "ADD COLUMN without IF NOT EXISTS"),
    ("ALTER TABLE ${db}.t${on_cluster} ADD INDEX i y TYPE minmax GRANULARITY 1",
     "ADD INDEX without IF NOT EXISTS"),
    ("ALTER TABLE IF EXISTS ${db}.t${on_cluster} ADD COLUMN IF NOT EXISTS y String",
     "ALTER TABLE IF EXISTS is not valid ClickHouse SQL"),
    ("CREATE TABLE IF NOT EXISTS ${db}.t ON CLUSTER 'prod' (x UInt8) ENGINE = ${replicated}MergeTree() "
     "ORDER BY x",
     "literal ON CLUSTER"),
    ("CREATE TABLE IF NOT EXISTS ${db}.t (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x",
     "DDL without ${on_cluster}"),
    ("CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} (x UInt8) ENGINE = MergeTree() ORDER BY x",
     "ENGINE = MergeTree without ${replicated}"),
    ("CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} (x UInt8) ENGINE = ReplicatedMergeTree() ORDER BY x",
     "literal Replicated engine"),
    ("CREATE TABLE IF NOT EXISTS events${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x",
     "name tables as ${db}.<table>, not events"),
]  # fmt: skip

DESTRUCTIVE = [
    ("DROP TABLE IF EXISTS ${db}.t${on_cluster}", "DROP"),
    ("TRUNCATE TABLE IF EXISTS ${db}.t${on_cluster}", "TRUNCATE"),
    ("ALTER TABLE ${db}.t${on_cluster} DROP COLUMN IF EXISTS y", "ALTER DROP"),
    ("ALTER TABLE ${db}.t${on_cluster} DROP PARTITION 202401", "ALTER DROP"),
    ("ALTER TABLE ${db}.t${on_cluster} DELETE WHERE x = 1", "ALTER DELETE"),
    ("ALTER TABLE ${db}.t${on_cluster} UPDATE x = 2 WHERE x = 1", "ALTER UPDATE"),
    ("ALTER TABLE ${db}.t${on_cluster} MODIFY COLUMN IF EXISTS x UInt16", "ALTER MODIFY COLUMN"),
    ("ALTER TABLE ${db}.t${on_cluster} RENAME COLUMN IF EXISTS x TO z", "ALTER RENAME COLUMN"),
    ("ALTER TABLE ${db}.t${on_cluster} MODIFY TTL toDateTime(t) + INTERVAL 1 DAY", "ALTER MODIFY TTL"),
    ("RENAME TABLE ${db}.a TO ${db}.b${on_cluster}", "RENAME"),
    ("DELETE FROM ${db}.t WHERE x = 1", "DELETE"),
]


def problems_for(migrations, sql: str, *, contract: bool = False) -> list[str]:
    header = "-- opentrace: contract\n" if contract else ""
    footer = "\n-- down\nSELECT 1;\n"  # reversibility has tests of its own below
    migrations.write("0001_candidate.sql", header + sql + ";\n" + footer)
    return [problem.message for problem in lint(load_migrations())]


def test_the_shipped_migrations_follow_the_rules():
    assert [str(problem) for problem in lint(load_migrations(DEFAULT_DIRECTORY))] == []


def test_the_lint_command_accepts_the_shipped_migrations():
    result = cli("clickhouse_migrate", "lint")
    assert result.code == 0, result.text
    assert "follow the rules" in result.out


@pytest.mark.parametrize("sql", GOOD)
def test_it_accepts_well_formed_statements(migrations, sql):
    assert problems_for(migrations, sql) == []


@pytest.mark.parametrize(("sql", "expected"), BAD)
def test_it_rejects_each_bad_form(migrations, sql, expected):
    found = problems_for(migrations, sql)
    assert any(expected in message for message in found), found


@pytest.mark.parametrize(("sql", "label"), DESTRUCTIVE)
def test_it_flags_destructive_statements_outside_a_contract_file(migrations, sql, label):
    found = problems_for(migrations, sql)
    assert any(f"destructive statement ({label}" in message for message in found), found


@pytest.mark.parametrize(("sql", "label"), DESTRUCTIVE)
def test_a_contract_file_may_be_destructive(migrations, sql, label):
    found = problems_for(migrations, sql, contract=True)
    assert not any("destructive" in message for message in found), found


def test_the_lint_command_names_file_statement_and_line_and_fails(migrations):
    migrations.write(
        "0001_first.sql",
        "CREATE DATABASE IF NOT EXISTS ${db}${on_cluster};\n\nALTER TABLE IF EXISTS ${db}.t${on_cluster} "
        "ADD COLUMN IF NOT EXISTS y String;\n-- irreversible: a test file\n",
    )
    result = cli("clickhouse_migrate", "lint")
    assert result.code == 1
    assert "0001_first.sql: statement 2 (line 3): ALTER TABLE IF EXISTS is not valid" in result.err
    assert "1 problem(s)" in result.err


def test_the_lint_command_reports_a_malformed_file_as_one_line(migrations):
    migrations.write("0001_first.sql", "SELECT 'unterminated;\n")
    result = cli("clickhouse_migrate", "lint")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "CommandError: 0001_first.sql: unterminated string literal starting on line 1"
    ]


CREATE_T = (
    "CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} (x UInt8) "
    "ENGINE = ${replicated}MergeTree() ORDER BY x;\n"
)


def file_problems(migrations, text: str) -> list[str]:
    migrations.write("0001_candidate.sql", text)
    return [str(problem) for problem in lint(load_migrations())]


def test_the_shipped_migrations_can_be_undone():
    assert all(migration.reversible for migration in load_migrations(DEFAULT_DIRECTORY))


def test_a_migration_with_neither_down_nor_irreversible_is_refused(migrations):
    assert file_problems(migrations, CREATE_T) == [
        "0001_candidate.sql: neither a `-- down` part nor `-- irreversible: <reason>`: write the "
        "statements that undo this migration after a line `-- down`, or say why it cannot be undone"
    ]


def test_a_down_part_may_drop_what_the_migration_created(migrations):
    assert (
        file_problems(migrations, CREATE_T + "-- down\nDROP TABLE IF EXISTS ${db}.t${on_cluster} SYNC;\n")
        == []
    )


def test_an_irreversible_migration_with_a_reason_passes(migrations):
    assert file_problems(migrations, "-- irreversible: rewrites every event\n" + CREATE_T) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CREATE_T + "-- down\n-- nothing here\n", "`-- down` is followed by no statement"),
        ("-- irreversible:\n" + CREATE_T, "`-- irreversible:` without a reason"),
        (
            "-- irreversible: no\n" + CREATE_T + "-- down\nSELECT 1;\n",
            "both `-- down` and `-- irreversible:`",
        ),
        (
            CREATE_T + "-- down\nDROP TABLE ${db}.t;\n",
            "down: DROP TABLE without IF EXISTS is not re-runnable",
        ),
    ],
)
def test_reversibility_problems_are_named(migrations, text, expected):
    found = file_problems(migrations, text)
    assert any(expected in problem for problem in found), found


def test_down_statements_are_named_by_their_line_in_the_file(migrations):
    found = file_problems(migrations, CREATE_T + "\n-- down\nDROP TABLE ${db}.t${on_cluster};\n")
    assert found == [
        "0001_candidate.sql: statement 1 (line 4): down: DROP TABLE without IF EXISTS is not re-runnable"
    ]
