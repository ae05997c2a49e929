"""The ClickHouse migration tests' harness: the CLI, queries, the ledger, migration folders.

Commands are run through `call_command`, and a `CommandError` becomes the exit code
`manage.py` would return. `tests/clickhouse/conftest.py` wraps the engine and the folder as
fixtures (every test gets its own chdb path: switching paths costs ~0.1 s; one path is open
at a time in a process, and the runner closes its client after each command).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

from opentrace.clickhouse import client as clickhouse


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


def query(sql: str, **parameters: object) -> Sequence[Sequence[Any]]:
    with clickhouse.connect() as client:
        return client.query(sql, parameters=parameters or None).result_rows


def command(sql: str) -> object:
    with clickhouse.connect() as client:
        return client.command(sql)


def ledger_rows(name: str) -> Sequence[Sequence[Any]]:
    """Every row the ledger holds for `name` (no FINAL: the full append-only history)."""
    return query(
        "SELECT status, statements_done, statements_total, is_deleted, reason "
        "FROM opentrace.schema_migrations WHERE name = {name:String} ORDER BY rev",
        name=name,
    )


class MigrationsFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str, sql: str) -> Path:
        file = self.path / name
        file.write_text(textwrap.dedent(sql).lstrip())
        return file
