"""`migrate_all --state` and `--revert-to`: back to a saved state, ClickHouse first, or nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from testing.clickhouse import cli, ledger_rows, query

pytestmark = pytest.mark.django_db(transaction=True)

BASE = (
    "CREATE TABLE IF NOT EXISTS ${db}.base${on_cluster} (x UInt8)\n"
    "ENGINE = ${replicated}MergeTree() ORDER BY x;\n"
    "-- down\nDROP TABLE IF EXISTS ${db}.base${on_cluster} SYNC;\n"
)
ADD_COLUMN = (
    "ALTER TABLE ${db}.base${on_cluster} ADD COLUMN IF NOT EXISTS country String DEFAULT '';\n"
    "-- down\nALTER TABLE ${db}.base${on_cluster} DROP COLUMN IF EXISTS country;\n"
)
IRREVERSIBLE = (
    "-- irreversible: the old rows are rewritten in place\n"
    "ALTER TABLE ${db}.base${on_cluster} ADD COLUMN IF NOT EXISTS region String DEFAULT '';\n"
)
REVERSIBLE_DJANGO = {"opentrace": "tests.clickhouse.reversible_django_migrations"}
IRREVERSIBLE_DJANGO = {"opentrace": "tests.clickhouse.irreversible_django_migrations"}


@pytest.fixture(autouse=True)
def no_test_migrations_left():
    """The test database as other tests expect it: without the migrations these tests add."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS revert_marker")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'opentrace'")


def state() -> dict:
    result = cli("migrate_all", "--state")
    assert result.code == 0, result.text
    return json.loads(result.out)


def save(tmp_path: Path, saved: dict) -> str:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(saved))
    return str(path)


def columns() -> list[str]:
    return [
        name for (name,) in query("SELECT name FROM system.columns WHERE table = 'base' ORDER BY position")
    ]


def django_tables() -> set[str]:
    return set(connection.introspection.table_names())


def test_state_lists_the_applied_migrations_of_both_databases(engine, migrations):
    migrations.write("0001_base.sql", BASE)
    migrations.write("0002_country.sql", ADD_COLUMN)
    before = state()
    assert before["clickhouse"] == []
    assert "0001_initial" in before["django"]["updates"]
    assert set(before) == {"django", "clickhouse"}

    assert cli("migrate_all").code == 0
    assert state()["clickhouse"] == ["0001_base", "0002_country"]


def test_revert_to_undoes_what_was_applied_since_clickhouse_and_django(engine, migrations, tmp_path):
    migrations.write("0001_base.sql", BASE)
    assert cli("migrate_all").code == 0
    saved = state()
    with override_settings(MIGRATION_MODULES=REVERSIBLE_DJANGO):
        migrations.write("0002_country.sql", ADD_COLUMN)
        assert cli("migrate_all").code == 0
        assert columns() == ["x", "country"]
        assert "revert_marker" in django_tables()

        result = cli("migrate_all", "--revert-to", save(tmp_path, saved))

        assert result.code == 0, result.text
        assert result.out.strip().splitlines() == [
            "ClickHouse: reverted 0002_country",
            "Django: reverted opentrace.0001_marker",
        ]
        assert columns() == ["x"]
        assert "revert_marker" not in django_tables()
        assert state() == saved
        # The ledger keeps the history: applied, then removed by the revert.
        assert ledger_rows("0002_country")[-1][3:] == (1, "reverted by migrate_all --revert-to")
        # Reverted, the migration is pending again: the next apply runs it from the start.
        assert cli("migrate_all").code == 0
        assert columns() == ["x", "country"]


def test_a_second_revert_to_the_same_state_changes_nothing(engine, migrations, tmp_path):
    saved = state()
    migrations.write("0001_base.sql", BASE)
    assert cli("migrate_all").code == 0
    path = save(tmp_path, saved)
    assert cli("migrate_all", "--revert-to", path).code == 0
    again = cli("migrate_all", "--revert-to", path)
    assert again.code == 0, again.text
    assert again.out.strip().splitlines() == [
        "ClickHouse: reverted nothing to revert",
        "Django: reverted nothing to revert",
    ]


def test_an_irreversible_clickhouse_migration_in_the_way_changes_nothing(engine, migrations, tmp_path):
    migrations.write("0001_base.sql", BASE)
    assert cli("migrate_all").code == 0
    saved = state()
    migrations.write("0002_country.sql", ADD_COLUMN)
    migrations.write("0003_region.sql", IRREVERSIBLE)
    with override_settings(MIGRATION_MODULES=REVERSIBLE_DJANGO):
        assert cli("migrate_all").code == 0
        after = state()

        result = cli("migrate_all", "--revert-to", save(tmp_path, saved))

        assert result.code == 1
        assert result.err.strip() == (
            "CommandError: ClickHouse migration 0003_region is irreversible (the old rows are rewritten "
            "in place); nothing was reverted"
        )
        assert state() == after
        assert columns() == ["x", "country", "region"]
        assert "revert_marker" in django_tables()


def test_an_irreversible_django_migration_in_the_way_changes_nothing(engine, migrations, tmp_path):
    migrations.write("0001_base.sql", BASE)
    assert cli("migrate_all").code == 0
    saved = state()
    migrations.write("0002_country.sql", ADD_COLUMN)
    with override_settings(MIGRATION_MODULES=IRREVERSIBLE_DJANGO):
        assert cli("migrate_all").code == 0
        after = state()

        result = cli("migrate_all", "--revert-to", save(tmp_path, saved))

        assert result.code == 1
        assert "Django migration opentrace.0002_backfill is irreversible" in result.err
        assert state() == after
        assert columns() == ["x", "country"]


def test_a_migration_that_failed_half_way_is_undone_too(engine, migrations, tmp_path):
    migrations.write("0001_base.sql", BASE)
    assert cli("migrate_all").code == 0
    saved = state()
    migrations.write(
        "0002_two_steps.sql",
        "ALTER TABLE ${db}.base${on_cluster} ADD COLUMN IF NOT EXISTS country String DEFAULT '';\n"
        "ALTER TABLE ${db}.missing${on_cluster} ADD COLUMN IF NOT EXISTS y UInt8;\n"
        "-- down\nALTER TABLE ${db}.base${on_cluster} DROP COLUMN IF EXISTS country;\n",
    )
    assert cli("migrate_all").code == 1
    assert columns() == ["x", "country"]

    result = cli("migrate_all", "--revert-to", save(tmp_path, saved))

    assert result.code == 0, result.text
    assert columns() == ["x"]
    status = json.loads(cli("clickhouse_migrate", "status", "--json").out)
    assert [(m["name"], m["state"]) for m in status["migrations"]] == [
        ("0001_base", "applied"),
        ("0002_two_steps", "pending"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "the saved migration state is not JSON"),
        ('{"django": {}}', 'must be {"django": {...}, "clickhouse": [...]}'),
        ('{"django": {"auth": "0001"}, "clickhouse": []}', "must map app labels to lists of names"),
        ('{"django": {}, "clickhouse": [1]}', '"clickhouse" in the saved migration state must be a list'),
    ],
)
def test_a_malformed_state_is_refused_before_anything_changes(
    engine, migrations, tmp_path, content, expected
):
    migrations.write("0001_base.sql", BASE)
    assert cli("migrate_all").code == 0
    path = tmp_path / "state.json"
    path.write_text(content)
    result = cli("migrate_all", "--revert-to", str(path))
    assert result.code == 1
    assert expected in result.err
    assert state()["clickhouse"] == ["0001_base"]
