"""Fixtures for the ClickHouse migration tests: a fresh embedded engine, a migrations folder.

The CLI, queries and the ledger are `testing/clickhouse.py`. Every test gets its own chdb
path (switching paths costs ~0.1 s; one path is open at a time in a process, and the runner
closes its client after each command).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from opentrace.config import ClickHouseTarget
from testing.clickhouse import MigrationsFolder


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "clickhouse"
    target = ClickHouseTarget(dsn=f"chdb://{path}", database="opentrace", embedded=True, path=path)
    with override_settings(CLICKHOUSE=target, CLICKHOUSE_CLUSTER=None):
        yield path


@pytest.fixture
def migrations(tmp_path: Path) -> Iterator[MigrationsFolder]:
    """An empty migrations folder that the runner uses instead of the shipped one."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    with override_settings(CLICKHOUSE_MIGRATIONS_DIR=folder):
        yield MigrationsFolder(folder)
