"""Cluster mode: `${on_cluster}` and `${replicated}` filled in, and a preflight for the cluster.

A real cluster cannot run here; the rendered SQL is asserted instead, and the preflight is
shown to fail clearly on the embedded engine, which defines no cluster.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from opentrace.clickhouse import ledger
from opentrace.clickhouse.catalog import TemplateContext, load_migrations
from opentrace.clickhouse.ledger import _CREATE_DATABASE, _CREATE_TABLE
from testing.clickhouse import cli, query

pytestmark = pytest.mark.django_db


def shipped_sql(cluster: str | None) -> dict[str, list[str]]:
    context = TemplateContext(database="opentrace", cluster=cluster)
    return {migration.name: migration.rendered(context) for migration in load_migrations()}


def test_single_node_rendering_has_no_cluster_clause_and_plain_engines():
    sql = shipped_sql(None)
    events = sql["0001_events"][0]
    assert events.startswith("CREATE TABLE IF NOT EXISTS opentrace.events\n(")
    assert "ENGINE = ReplacingMergeTree(received_at)" in events
    logs = sql["0002_system_logs"][0]
    assert logs.startswith("CREATE TABLE IF NOT EXISTS opentrace.system_logs\n(")
    assert "ENGINE = MergeTree()" in logs
    assert not any("ON CLUSTER" in s or "Replicated" in s for statements in sql.values() for s in statements)


def test_cluster_rendering_adds_on_cluster_and_replicated_engines():
    sql = shipped_sql("analytics")
    events = sql["0001_events"][0]
    assert events.startswith("CREATE TABLE IF NOT EXISTS opentrace.events ON CLUSTER 'analytics'\n(")
    assert "ENGINE = ReplicatedReplacingMergeTree(received_at)" in events
    logs = sql["0002_system_logs"][0]
    assert logs.startswith("CREATE TABLE IF NOT EXISTS opentrace.system_logs ON CLUSTER 'analytics'\n(")
    assert "ENGINE = ReplicatedMergeTree()" in logs


def test_the_ledger_is_created_on_the_cluster_too():
    context = TemplateContext(database="opentrace", cluster="analytics")
    from opentrace.clickhouse.catalog import render

    assert (
        render(_CREATE_DATABASE, context) == "CREATE DATABASE IF NOT EXISTS opentrace ON CLUSTER 'analytics'"
    )
    table = render(_CREATE_TABLE, context)
    assert table.startswith(
        "CREATE TABLE IF NOT EXISTS opentrace.schema_migrations ON CLUSTER 'analytics'\n("
    )
    assert "ENGINE = ReplicatedReplacingMergeTree(rev, is_deleted)" in table
    single = render(_CREATE_TABLE, TemplateContext(database="opentrace"))
    assert "ENGINE = ReplacingMergeTree(rev, is_deleted)" in single
    assert ledger.table(context) == "opentrace.schema_migrations"


def test_plan_sql_shows_the_cluster_rendering(engine):
    with override_settings(CLICKHOUSE_CLUSTER="analytics"):
        result = cli("clickhouse_migrate", "plan", "--sql")
    assert result.code == 0, result.text
    assert "CREATE TABLE IF NOT EXISTS opentrace.events ON CLUSTER 'analytics'" in result.out


def test_apply_refuses_a_cluster_the_server_does_not_define(engine):
    with override_settings(CLICKHOUSE_CLUSTER="analytics"):
        result = cli("clickhouse_migrate", "apply")
    assert result.code == 1
    assert result.err.strip() == (
        "CommandError: CLICKHOUSE_CLUSTER is 'analytics' but the ClickHouse server defines no such cluster "
        "(system.clusters lists: none); fix remote_servers or unset CLICKHOUSE_CLUSTER"
    )
    # Nothing was created: not even the database or the ledger.
    assert query("SELECT count() FROM system.databases WHERE name = 'opentrace'") == [(0,)]


def test_status_reports_the_cluster(engine):
    with override_settings(CLICKHOUSE_CLUSTER="analytics"):
        result = cli("clickhouse_migrate", "status")
    assert "database opentrace on cluster analytics" in result.out
