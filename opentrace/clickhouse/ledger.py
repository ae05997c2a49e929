"""The ledger: what the ClickHouse migrations did, kept in ClickHouse itself.

`${db}.schema_migrations` is append-only: every change is a new row with a higher `rev`,
and `ReplacingMergeTree(rev, is_deleted)` read with `FINAL` gives the latest row per
migration. Nothing is updated in place, so a crash between two writes never leaves a half
row, and the rows without `FINAL` are the full history. Marking a migration not applied
appends a row with `is_deleted = 1`, which hides it from `FINAL`.

`status` is a plain string (`running`, `applied`, `failed`), validated here on write and
read and by a CHECK constraint in ClickHouse, rather than an `Enum8` whose definition would
need a migration of its own to grow.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentrace.clickhouse.catalog import TemplateContext, render
from opentrace.clickhouse.errors import LedgerUnavailable, MigrationError
from opentrace.redact import redact

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

TABLE = "schema_migrations"
RUNNING = "running"
APPLIED = "applied"
FAILED = "failed"
STATUSES = (RUNNING, APPLIED, FAILED)
MAX_ERROR_CHARS = 4000

_CREATE_DATABASE = "CREATE DATABASE IF NOT EXISTS ${db}${on_cluster}"
_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS ${db}.schema_migrations${on_cluster}
(
    name String,
    rev UInt64,
    is_deleted UInt8 DEFAULT 0,
    checksum String,
    status LowCardinality(String),
    statements_done UInt32,
    statements_total UInt32,
    error String,
    reason String,
    run_id String,
    app_version String,
    host String,
    started_at DateTime64(6, 'UTC'),
    finished_at Nullable(DateTime64(6, 'UTC')),
    recorded_at DateTime64(6, 'UTC'),
    CONSTRAINT status_is_known CHECK status IN ('running', 'applied', 'failed')
)
ENGINE = ${replicated}ReplacingMergeTree(rev, is_deleted)
ORDER BY name"""

_COLUMNS = (
    "name",
    "rev",
    "is_deleted",
    "checksum",
    "status",
    "statements_done",
    "statements_total",
    "error",
    "reason",
    "run_id",
    "app_version",
    "host",
    "started_at",
    "finished_at",
    "recorded_at",
)


P = ParamSpec("P")
R = TypeVar("R")


def _now() -> datetime:
    return datetime.now(UTC)


def _guarded(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """ClickHouse failures while touching the ledger become one clear `LedgerUnavailable`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except MigrationError:
                raise
            except Exception as exc:
                detail = redact(" ".join(str(exc).split()))[:500] or type(exc).__name__
                raise LedgerUnavailable(f"could not {action} the migration ledger {TABLE}: {detail}") from exc

        return wrapper

    return decorate


@dataclass(frozen=True)
class LedgerRow:
    name: str
    checksum: str
    status: str
    statements_done: int
    statements_total: int
    run_id: str
    app_version: str
    host: str
    started_at: datetime
    finished_at: datetime | None = None
    error: str = ""
    reason: str = ""
    is_deleted: bool = False
    rev: int = 0
    recorded_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise MigrationError(
                f"the ledger row for {self.name} has the unknown status {self.status!r} "
                f"(expected one of {', '.join(STATUSES)})"
            )
        if not 0 <= self.statements_done <= self.statements_total:
            raise MigrationError(
                f"the ledger row for {self.name} records {self.statements_done} of "
                f"{self.statements_total} statements done"
            )

    @property
    def dirty(self) -> bool:
        return self.status in (RUNNING, FAILED)

    def advanced(self, **changes: Any) -> LedgerRow:
        """The next row for the same migration (the ledger never changes a row it wrote)."""
        return replace(self, **changes)


def table(context: TemplateContext) -> str:
    return render("${db}." + TABLE, context)


@_guarded("create")
def ensure(client: Client, context: TemplateContext) -> None:
    """Create the database and the ledger table when they do not exist (on the cluster, if any)."""
    for statement in (_CREATE_DATABASE, _CREATE_TABLE):
        client.command(render(statement, context), settings={"alter_sync": 2})


@_guarded("find")
def exists(client: Client, context: TemplateContext) -> bool:
    return bool(int(str(client.command(f"EXISTS TABLE {table(context)}"))))


def _micros_to_datetime(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1_000_000, UTC)


@_guarded("read")
def read(client: Client, context: TemplateContext) -> dict[str, LedgerRow]:
    """The current row of every migration the ledger knows (none when there is no ledger yet)."""
    if not exists(client, context):
        return {}
    # Times are read as integers: the embedded engine may return DateTime64 values without
    # their zone, and integers are unambiguous.
    result = client.query(
        f"""SELECT name, rev, checksum, status, statements_done, statements_total, error, reason,
                   run_id, app_version, host,
                   toUnixTimestamp64Micro(started_at), toUnixTimestamp64Micro(finished_at),
                   toUnixTimestamp64Micro(recorded_at)
            FROM {table(context)} FINAL
            ORDER BY name"""  # noqa: S608 - the table name is rendered from validated settings
    )
    rows: dict[str, LedgerRow] = {}
    for record in result.result_rows:
        (name, rev, checksum, status, done, total, error, reason, run_id, version, host) = record[:11]
        started, finished, recorded = record[11:]
        rows[name] = LedgerRow(
            name=name,
            rev=int(rev),
            checksum=checksum,
            status=status,
            statements_done=int(done),
            statements_total=int(total),
            error=error,
            reason=reason,
            run_id=run_id,
            app_version=version,
            host=host,
            started_at=_micros_to_datetime(started) or _now(),
            finished_at=_micros_to_datetime(finished),
            recorded_at=_micros_to_datetime(recorded),
        )
    return rows


@_guarded("read")
def history(client: Client, context: TemplateContext, name: str) -> list[dict[str, object]]:
    """Every row ever written for `name`, oldest first (the audit trail behind `FINAL`)."""
    if not exists(client, context):
        return []
    result = client.query(
        f"""SELECT rev, is_deleted, status, statements_done, statements_total, error, reason, run_id
            FROM {table(context)} WHERE name = {{name:String}} ORDER BY rev""",  # noqa: S608 - see read()
        parameters={"name": name},
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


@_guarded("write to")
def append(client: Client, context: TemplateContext, row: LedgerRow) -> LedgerRow:
    """Write `row` as the newest state of its migration and return it as written."""
    # The caller holds the migration lock, so no other writer races this `rev`; the clock
    # alone could repeat or go backwards, the previous rev + 1 cannot.
    previous = client.command(
        f"SELECT max(rev) FROM {table(context)} WHERE name = {{name:String}}",  # noqa: S608 - see read()
        parameters={"name": row.name},
    )
    rev = max(time.time_ns(), int(str(previous or 0)) + 1)
    written = replace(row, rev=rev, recorded_at=_now(), error=row.error[:MAX_ERROR_CHARS])
    # A parameterised INSERT through `command`: values are bound server-side, and it avoids
    # the column-oriented insert path, whose first use costs seconds of imports.
    types = {
        "name": "String",
        "rev": "UInt64",
        "is_deleted": "UInt8",
        "checksum": "String",
        "status": "String",
        "statements_done": "UInt32",
        "statements_total": "UInt32",
        "error": "String",
        "reason": "String",
        "run_id": "String",
        "app_version": "String",
        "host": "String",
        "started_at": "DateTime64(6, 'UTC')",
        "finished_at": "Nullable(DateTime64(6, 'UTC'))",
        "recorded_at": "DateTime64(6, 'UTC')",
    }
    parameters = {column: getattr(written, column) for column in _COLUMNS}
    parameters["is_deleted"] = 1 if written.is_deleted else 0
    placeholders = ", ".join(f"{{{column}:{types[column]}}}" for column in _COLUMNS)
    client.command(
        f"INSERT INTO {table(context)} ({', '.join(_COLUMNS)}) VALUES ({placeholders})",  # noqa: S608 - see read()
        parameters=parameters,
    )
    return written
