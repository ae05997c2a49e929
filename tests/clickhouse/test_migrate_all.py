"""`manage.py migrate_all`: Django first, then ClickHouse, one summary, a named failure."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from contract.migrations import INCOMPATIBLE, STATE_KEYS
from testing.clickhouse import cli, query
from testing.helpers import clean_env, manage


def env_for(tmp_path: Path, database_url: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        CLICKHOUSE_URL=f"chdb://{tmp_path / 'clickhouse'}",
        OPENTRACE_DATA_DIR=str(tmp_path / "data"),
    )


def assert_migrate_all_from_empty(env: dict[str, str], vendor: str) -> None:
    before = manage("clickhouse_migrate", "status", "--check", env=env)
    assert before.returncode == 1, before.stderr
    assert "not up to date: 0 applied, 2 pending" in before.stderr

    first = manage("migrate_all", env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0].startswith(f"Django ({vendor}): applied ")
    assert "auth.0001_initial" in lines[0]
    assert "updates.0001_initial" in lines[0]
    assert lines[1] == "ClickHouse: applied 2 migration(s): 0001_events, 0002_system_logs"
    assert "Traceback" not in first.stderr

    after = manage("clickhouse_migrate", "status", "--check", env=env)
    assert after.returncode == 0, after.stdout + after.stderr


def test_migrate_all_on_sqlite_from_an_empty_database(tmp_path):
    assert_migrate_all_from_empty(env_for(tmp_path, f"sqlite:///{tmp_path / 'empty.sqlite3'}"), "sqlite")


@pytest.fixture
def empty_postgres_database():
    conf = connection.settings_dict
    name = f"ot_clickhouse_empty_{uuid.uuid4().hex[:8]}"
    params = {
        "host": conf["HOST"] or "127.0.0.1",
        "port": conf["PORT"] or 5432,
        "user": conf["USER"],
        "password": conf["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf.get("PASSWORD") else "")
    yield f"postgres://{auth}@{params['host']}:{params['port']}/{name}"
    with psycopg.connect(**params) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_migrate_all_on_postgresql_from_an_empty_database(tmp_path, empty_postgres_database):
    assert_migrate_all_from_empty(env_for(tmp_path, empty_postgres_database), "postgresql")


@pytest.mark.django_db(transaction=True)
def test_a_failing_clickhouse_migration_is_named_and_exits_1(engine, migrations):
    migrations.write(
        "0001_broken.sql",
        "CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} ENGINE = ${replicated}MergeTree() ORDER BY x "
        "AS SELECT x FROM ${db}.missing;\n",
    )
    result = cli("migrate_all")
    assert result.code == 1
    assert result.err.startswith("CommandError: ClickHouse migration 0001_broken failed at statement 1 of 1")
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_failing_django_migration_is_named_and_clickhouse_is_not_touched(engine):
    with override_settings(MIGRATION_MODULES={"opentrace": "tests.clickhouse.failing_django_migrations"}):
        result = cli("migrate_all")
    assert result.code == 1
    vendor = connection.vendor
    assert result.err.strip() == (
        f"CommandError: Django migration opentrace.0001_explode failed on {vendor}: RuntimeError: "
        "the metadata backfill found a row it cannot convert (ClickHouse was not touched)"
    )
    assert query("SELECT count() FROM system.databases WHERE name = 'opentrace'") == [(0,)]


@pytest.mark.django_db(transaction=True)
def test_migrate_all_prints_one_summary(engine):
    result = cli("migrate_all")
    assert result.code == 0, result.text
    assert result.out.strip().splitlines() == [
        f"Django ({connection.vendor}): already up to date",
        "ClickHouse: applied 2 migration(s): 0001_events, 0002_system_logs",
    ]


# --- `--state --check-compatible`: what the host agent runs once before `migrate` ---------------


@pytest.mark.django_db(transaction=True)
def test_the_compatibility_check_passes_the_shipped_migrations_and_prints_the_state_last(engine):
    result = cli("migrate_all", "--state", "--check-compatible")

    assert result.code == 0, result.text
    state = json.loads(result.out.strip().splitlines()[-1])
    assert set(state) == STATE_KEYS
    assert "0001_initial" in state["django"]["updates"]


@pytest.mark.django_db(transaction=True)
def test_a_django_migration_that_drops_a_column_is_refused_with_the_linters_report(engine):
    with override_settings(
        MIGRATION_MODULES={"opentrace": "tests.clickhouse.incompatible_django_migrations"}
    ):
        result = cli("migrate_all", "--state", "--check-compatible")
        plain = cli("migrate_all", "--state")  # a downtime release: not checked, the state still saved

    assert result.code == INCOMPATIBLE, result.text
    assert "0001_drop_a_column" in result.err
    assert "DROPPING columns" in result.err
    assert "the Django migrations fail the checks" in result.err
    assert result.out == ""  # no state: the agent saves none for a refused release
    assert plain.code == 0, plain.text
    assert set(json.loads(plain.out.strip().splitlines()[-1])) == STATE_KEYS
    assert "severity" in [column.name for column in connection.introspection.get_table_description(
        connection.cursor(), "updates_updaterun"
    )]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_destructive_clickhouse_migration_is_refused_and_named(engine, migrations):
    migrations.write(
        "0001_drop.sql", "DROP TABLE IF EXISTS ${db}.events${on_cluster};\n-- irreversible: a test\n"
    )

    result = cli("migrate_all", "--state", "--check-compatible")

    assert result.code == INCOMPATIBLE, result.text
    assert "0001_drop.sql" in result.err
    assert "the ClickHouse migrations fail the checks" in result.err


def test_check_compatible_goes_with_state():
    result = cli("migrate_all", "--check-compatible")

    assert result.code == 1
    assert "--check-compatible goes with --state" in result.err
