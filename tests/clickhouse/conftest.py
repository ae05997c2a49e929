"""Fixtures for the ClickHouse migration tests: a fresh embedded engine, migration folders, the CLI.

Every test gets its own chdb path (switching paths costs ~0.1 s; one path is open at a time
in a process, and the runner closes its client after each command). Commands are run
through `call_command`, and a `CommandError` becomes the exit code `manage.py` would return.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from opentrace.clickhouse import client as clickhouse
from opentrace.config import ClickHouseTarget


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*args: str) -> Result:
    """Run a management command as `manage.py` would: output and exit code, never an exception."""
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return Result(exc.returncode, out.getvalue(), err.getvalue() + f"CommandError: {exc}\n")
    return Result(0, out.getvalue(), err.getvalue())


def query(sql: str, **parameters: object) -> list[tuple]:
    with clickhouse.connect() as client:
        return client.query(sql, parameters=parameters or None).result_rows


def command(sql: str) -> object:
    with clickhouse.connect() as client:
        return client.command(sql)


def ledger_rows(name: str) -> list[tuple]:
    """Every row the ledger holds for `name` (no FINAL: the full append-only history)."""
    return query(
        "SELECT status, statements_done, statements_total, is_deleted, reason "
        "FROM opentrace.schema_migrations WHERE name = {name:String} ORDER BY rev",
        name=name,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "clickhouse"
    target = ClickHouseTarget(dsn=f"chdb://{path}", database="opentrace", embedded=True, path=path)
    with override_settings(CLICKHOUSE=target, CLICKHOUSE_CLUSTER=None):
        yield path


class MigrationsFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str, sql: str) -> Path:
        file = self.path / name
        file.write_text(textwrap.dedent(sql).lstrip())
        return file


@pytest.fixture
def migrations(tmp_path: Path) -> Iterator[MigrationsFolder]:
    """An empty migrations folder that the runner uses instead of the shipped one."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    with override_settings(CLICKHOUSE_MIGRATIONS_DIR=folder):
        yield MigrationsFolder(folder)
