"""Applying migrations on the real embedded ClickHouse engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from opentrace.clickhouse import migrator
from opentrace.clickhouse.catalog import load_migrations
from testing.clickhouse import cli, command, ledger_rows, query

# The writers take the migration lock, which on PostgreSQL lives in the test database.
pytestmark = pytest.mark.django_db


def table_names() -> list[str]:
    return [
        row[0] for row in query("SELECT name FROM system.tables WHERE database = 'opentrace' ORDER BY name")
    ]


def test_apply_from_empty_creates_the_schema_and_records_it(engine):
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 0, result.text
    assert "applied 2 migration(s): 0001_events, 0002_system_logs" in result.out
    assert table_names() == ["events", "schema_migrations", "system_logs"]
    shipped = {m.name: m for m in load_migrations()}
    rows = query(
        "SELECT name, status, statements_done, statements_total, checksum, app_version "
        "FROM opentrace.schema_migrations FINAL ORDER BY name"
    )
    assert rows == [
        (name, "applied", len(m.statements), len(m.statements), m.checksum, "1.1.5")
        for name, m in shipped.items()
    ]


def test_the_initial_schema_has_sensible_engines_partitions_and_ttl(engine):
    assert cli("clickhouse_migrate", "apply").code == 0
    tables = dict(
        (name, (engine_name, partition, sorting, create))
        for name, engine_name, partition, sorting, create in query(
            "SELECT name, engine, partition_key, sorting_key, create_table_query FROM system.tables "
            "WHERE database = 'opentrace' AND name IN ('events', 'system_logs')"
        )
    )
    engine_name, partition, sorting, create = tables["events"]
    assert engine_name == "ReplacingMergeTree"
    assert partition == "toYYYYMM(timestamp)"
    assert sorting.startswith("project_id, toDate(timestamp), event")
    assert "TTL toDateTime(timestamp) + toIntervalMonth(24)" in create
    engine_name, partition, sorting, create = tables["system_logs"]
    assert engine_name == "MergeTree"
    assert partition == "toYYYYMM(time)"
    assert sorting == "level, module, time"
    assert "TTL toDateTime(time) + toIntervalDay(90)" in create


def test_the_initial_schema_stores_events_and_logs(engine):
    assert cli("clickhouse_migrate", "apply").code == 0
    command(
        "INSERT INTO opentrace.events (project_id, event_id, event, distinct_id, timestamp, properties) "
        "VALUES (1, generateUUIDv4(), 'pageview', 'user-1', now64(3), '{\"path\": \"/\"}')"
    )
    command(
        "INSERT INTO opentrace.system_logs (level, module, message, details) "
        "VALUES ('WARNING', 'updates', 'registry slow', '{}')"
    )
    assert query("SELECT event, distinct_id FROM opentrace.events") == [("pageview", "user-1")]
    assert query("SELECT level, module, message FROM opentrace.system_logs") == [
        ("WARNING", "updates", "registry slow")
    ]
    with pytest.raises(Exception, match="level_is_known"):
        command("INSERT INTO opentrace.system_logs (level, module, message) VALUES ('LOUD', 'm', 'x')")


def test_apply_twice_is_a_no_op(engine):
    assert cli("clickhouse_migrate", "apply").code == 0
    before = query("SELECT count() FROM opentrace.schema_migrations")
    again = cli("clickhouse_migrate", "apply")
    assert again.code == 0, again.text
    assert "applied 0 migration(s); already up to date" in again.out
    assert query("SELECT count() FROM opentrace.schema_migrations") == before


def test_every_migration_can_run_twice_when_the_ledger_is_lost(engine):
    assert cli("clickhouse_migrate", "apply").code == 0
    command("INSERT INTO opentrace.events (project_id, event_id, event, distinct_id, timestamp) "
            "VALUES (7, generateUUIDv4(), 'kept', 'u', now64(3))")  # fmt: skip
    command("TRUNCATE TABLE opentrace.schema_migrations")

    result = cli("clickhouse_migrate", "apply")
    assert result.code == 0, result.text
    assert "applied 2 migration(s)" in result.out
    assert query("SELECT event FROM opentrace.events") == [("kept",)]
    assert cli("clickhouse_migrate", "status", "--check").code == 0


def test_apply_to_stops_at_the_named_migration(engine):
    result = cli("clickhouse_migrate", "apply", "--to", "1")
    assert result.code == 0, result.text
    assert "applied 1 migration(s): 0001_events; 1 pending beyond --to 0001" in result.out
    assert "system_logs" not in table_names()
    assert cli("clickhouse_migrate", "status", "--check").code == 1
    assert cli("clickhouse_migrate", "apply").code == 0
    assert cli("clickhouse_migrate", "status", "--check").code == 0


@pytest.mark.parametrize("value", ["0", "3", "-1"])
def test_apply_to_an_unknown_number_is_refused(engine, value):
    result = cli("clickhouse_migrate", "apply", "--to", value)
    assert result.code == 1
    assert f"--to {value}: no migration has that number" in result.err
    assert table_names() == ["schema_migrations"]


def test_status_check_exits_1_before_and_0_after(engine):
    before = cli("clickhouse_migrate", "status", "--check")
    assert before.code == 1
    assert "0001_events       pending" in before.out
    assert "not up to date: 0 applied, 2 pending" in before.err
    assert cli("clickhouse_migrate", "apply").code == 0
    after = cli("clickhouse_migrate", "status", "--check")
    assert after.code == 0, after.text
    assert "0001_events       applied   1/1" in after.out


def test_status_does_not_create_anything(engine):
    assert cli("clickhouse_migrate", "status").code == 0
    assert query("SELECT count() FROM system.databases WHERE name = 'opentrace'") == [(0,)]


def test_status_json_describes_each_migration(engine):
    assert cli("clickhouse_migrate", "apply", "--to", "1").code == 0
    data = json.loads(cli("clickhouse_migrate", "status", "--json").out)
    assert data["ok"] is False
    assert data["pending"] == ["0002_system_logs"]
    first = data["migrations"][0]
    assert first["name"] == "0001_events"
    assert first["state"] == "applied"
    assert first["checksum"] == first["applied_checksum"]
    started = datetime.fromisoformat(first["started_at"])
    assert started.tzinfo is not None
    assert abs((datetime.now(UTC) - started).total_seconds()) < 120


def test_plan_lists_what_apply_would_run_and_sql_renders_it(engine):
    plan = cli("clickhouse_migrate", "plan")
    assert plan.code == 0
    assert "apply would run 2 migration(s)" in plan.out
    sql = cli("clickhouse_migrate", "plan", "--sql").out
    assert "CREATE TABLE IF NOT EXISTS opentrace.events\n(" in sql
    assert "ENGINE = ReplacingMergeTree(received_at)" in sql
    assert "${" not in sql
    assert cli("clickhouse_migrate", "apply").code == 0
    assert "Nothing to apply" in cli("clickhouse_migrate", "plan").out


def test_pending_summary_reports_for_health(engine):
    summary = migrator.pending_summary()
    assert summary["ok"] is False
    assert summary["pending"] == ["0001_events", "0002_system_logs"]
    assert "pending: 0001_events, 0002_system_logs" in summary["message"]
    assert cli("clickhouse_migrate", "apply").code == 0
    assert migrator.pending_summary() == {
        "ok": True,
        "message": "2 ClickHouse migration(s) applied",
        "pending": [],
        "dirty": [],
        "changed": [],
        "unknown": [],
    }


def test_the_ledger_is_append_only(engine, migrations):
    migrations.write("0001_three.sql", """
        CREATE TABLE IF NOT EXISTS ${db}.a${on_cluster} (x UInt8)
            ENGINE = ${replicated}MergeTree() ORDER BY x;
        CREATE TABLE IF NOT EXISTS ${db}.b${on_cluster} (x UInt8)
            ENGINE = ${replicated}MergeTree() ORDER BY x;
        CREATE TABLE IF NOT EXISTS ${db}.c${on_cluster} (x UInt8)
            ENGINE = ${replicated}MergeTree() ORDER BY x;
    """)  # fmt: skip
    assert cli("clickhouse_migrate", "apply").code == 0
    # running before the first statement, progress after each but the last, then applied.
    assert [row[:3] for row in ledger_rows("0001_three")] == [
        ("running", 0, 3),
        ("running", 1, 3),
        ("running", 2, 3),
        ("applied", 3, 3),
    ]


def test_the_ledger_refuses_an_unknown_status(engine):
    assert cli("clickhouse_migrate", "apply").code == 0
    with pytest.raises(Exception, match="status_is_known"):
        command(
            "INSERT INTO opentrace.schema_migrations (name, rev, status, statements_done, statements_total) "
            "VALUES ('0009_x', 1, 'done', 0, 0)"
        )


def test_statements_run_with_percent_signs_and_braces_intact(engine, migrations):
    migrations.write("0001_odd.sql", """
        CREATE TABLE IF NOT EXISTS ${db}.odd${on_cluster} (s String)
            ENGINE = ${replicated}MergeTree() ORDER BY s;
        INSERT INTO ${db}.odd VALUES ('100%'), ('{shard}'), ('semi;colon'), ('it''s'), ('$$');
    """)  # fmt: skip
    result = cli("clickhouse_migrate", "apply")
    assert result.code == 0, result.text
    assert query("SELECT s FROM opentrace.odd ORDER BY s") == [
        ("$",),
        ("100%",),
        ("it's",),
        ("semi;colon",),
        ("{shard}",),
    ]


def test_status_exits_2_when_the_state_cannot_be_read(engine, migrations):
    migrations.write("0001_first.sql", "SELECT 'unterminated;\n")
    result = cli("clickhouse_migrate", "status", "--check")
    assert result.code == 2
    assert result.err == "CommandError: 0001_first.sql: unterminated string literal starting on line 1\n"
