"""Running ClickHouse migrations: status, plan, apply, resume and mark (SPEC §9).

A migration's life in the ledger: a `running` row before its first statement, a progress
row after each statement, then `applied`; or `failed` with ClickHouse's error at the
statement that failed. Statements run with `mutations_sync`/`alter_sync` so that "done"
means done on every replica, not merely queued.

Before applying, the ledger must be clean: a dirty migration (`running` or `failed`), an
applied migration whose file changed, or an applied migration with no file stops `apply`
with a message naming the migration, the next statement and the repair commands. Writers
(`apply`, `resume`, `mark`) take the migration lock (`opentrace.clickhouse.lock`) first and
open ClickHouse only while they work: the embedded engine admits one process at a time.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings

from opentrace.clickhouse import client as clickhouse
from opentrace.clickhouse import ledger
from opentrace.clickhouse.catalog import Migration, TemplateContext, load_migrations
from opentrace.clickhouse.errors import (
    ClusterMissing,
    Irreversible,
    MigrationBlocked,
    MigrationError,
    StatementFailed,
)
from opentrace.clickhouse.ledger import APPLIED, FAILED, RUNNING, LedgerRow
from opentrace.clickhouse.lock import MigrationLock, holder_elsewhere
from opentrace.redact import redact

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

# States shown by `status` (the ledger's statuses plus what comparing it with the files adds).
PENDING = "pending"
CHANGED = "changed"  # applied, but the file's checksum differs from the recorded one
UNKNOWN = "unknown"  # recorded in the ledger, but no file has that name
BLOCKING = (RUNNING, FAILED, CHANGED, UNKNOWN)

Report = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    """ClickHouse's error as one short line, without credentials."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)[:1000]


def excerpt(sql: str, limit: int = 160) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class MigrationState:
    name: str
    state: str
    migration: Migration | None
    row: LedgerRow | None

    @property
    def number(self) -> int | None:
        return self.migration.number if self.migration else None

    @property
    def blocking(self) -> bool:
        return self.state in BLOCKING

    @property
    def file_changed(self) -> bool:
        return bool(self.migration and self.row and self.row.checksum != self.migration.checksum)

    def next_statement(self) -> int:
        """0-based index of the statement a resume would run first."""
        return self.row.statements_done if self.row else 0

    def repair_hint(self) -> str:
        name = self.name
        mark = f"manage.py clickhouse_migrate mark {name}"
        if self.state == UNKNOWN:
            return (
                f"ClickHouse migration {name} is recorded as {self.row.status if self.row else '?'} "
                "but has no file (was a newer release rolled back?). Repair: deploy the release that "
                f'ships it, or forget it with `{mark} --not-applied --reason "..."`'
            )
        if self.state == CHANGED:
            assert self.row is not None
            assert self.migration is not None
            return (
                f"ClickHouse migration {name} was applied with checksum {self.row.checksum[:12]} but its "
                f"file now has {self.migration.checksum[:12]}; applied migrations must not be edited. "
                f"Repair: restore the file as released and put the change in a new migration, or, if the "
                f'database already matches the new file, record it with `{mark} --applied --reason "..."`'
            )
        assert self.row is not None
        row = self.row
        what = f"{name} is {row.status} after {row.statements_done} of {row.statements_total} statements"
        if row.status == RUNNING:
            what += " (its run was interrupted)"
        if row.error:
            what += f" (error: {excerpt(row.error, 300)})"
        if self.migration and not self.file_changed and row.statements_done < len(self.migration.statements):
            index = row.statements_done
            statement = self.migration.statements[index]
            what += f". Next statement {index + 1} (line {statement.line}): {excerpt(statement.text)}"
        if self.file_changed:
            resume = (
                "its file changed since, so it cannot be resumed: run it again from the start with "
                f'`{mark} --not-applied --reason "..."` and then `manage.py clickhouse_migrate apply`'
            )
        else:
            resume = f"fix the cause, then `manage.py clickhouse_migrate resume {name}`"
        return (
            f"ClickHouse migration {what}. Repair: {resume}; if you completed it by hand, "
            f'`{mark} --applied --reason "..."`'
        )


class StatusDict(TypedDict):
    database: str
    cluster: str | None
    ok: bool
    in_progress: str | None
    pending: list[str]
    dirty: list[str]
    changed: list[str]
    unknown: list[str]
    migrations: list[dict[str, Any]]


@dataclass(frozen=True)
class Status:
    database: str
    cluster: str | None
    states: list[MigrationState]
    in_progress: str | None = None  # who holds the migration lock, when a run is going on

    def named(self, state: str) -> list[str]:
        return [item.name for item in self.states if item.state == state]

    @property
    def pending(self) -> list[str]:
        return self.named(PENDING)

    @property
    def dirty(self) -> list[str]:
        return [item.name for item in self.states if item.state in (RUNNING, FAILED)]

    @property
    def changed(self) -> list[str]:
        return self.named(CHANGED)

    @property
    def unknown(self) -> list[str]:
        return self.named(UNKNOWN)

    @property
    def blockers(self) -> list[MigrationState]:
        return [item for item in self.states if item.blocking]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.blockers

    def find(self, name: str) -> MigrationState:
        wanted = name.removesuffix(".sql")
        for item in self.states:
            if wanted in (item.name, f"{item.number:04d}" if item.number else None):
                return item
        raise MigrationError(f"no ClickHouse migration is named {name!r} (see `clickhouse_migrate status`)")

    def summary(self) -> str:
        counts = [
            (len(self.named(APPLIED)), "applied"),
            (len(self.pending), "pending"),
            (len(self.dirty), "dirty"),
            (len(self.changed), "changed"),
            (len(self.unknown), "without a file"),
        ]
        return ", ".join(f"{count} {label}" for count, label in counts if count or label == "applied")

    def as_dict(self) -> StatusDict:
        migrations: list[dict[str, Any]] = []
        for item in self.states:
            row = item.row
            migrations.append(
                {
                    "number": item.number,
                    "name": item.name,
                    "state": item.state,
                    "statements_done": row.statements_done if row else 0,
                    "statements_total": len(item.migration.statements)
                    if item.migration
                    else (row.statements_total if row else 0),
                    "checksum": item.migration.checksum if item.migration else None,
                    "applied_checksum": row.checksum if row else None,
                    "error": row.error if row else "",
                    "reason": row.reason if row else "",
                    "run_id": row.run_id if row else None,
                    "app_version": row.app_version if row else None,
                    "host": row.host if row else None,
                    "started_at": row.started_at.isoformat() if row else None,
                    "finished_at": row.finished_at.isoformat() if row and row.finished_at else None,
                }
            )
        return {
            "database": self.database,
            "cluster": self.cluster,
            "ok": self.up_to_date,
            "in_progress": self.in_progress,
            "pending": self.pending,
            "dirty": self.dirty,
            "changed": self.changed,
            "unknown": self.unknown,
            "migrations": migrations,
        }


def compare(migrations: list[Migration], rows: dict[str, LedgerRow], context: TemplateContext) -> Status:
    """What the files and the ledger say together."""
    states: list[MigrationState] = []
    for migration in migrations:
        row = rows.get(migration.name)
        if row is None:
            state = PENDING
        elif row.status == APPLIED and row.checksum != migration.checksum:
            state = CHANGED
        else:
            state = row.status
        states.append(MigrationState(migration.name, state, migration, row))
    known = {migration.name for migration in migrations}
    for name, row in sorted(rows.items()):
        if name not in known:
            states.append(MigrationState(name, UNKNOWN, None, row))
    return Status(database=context.database, cluster=context.cluster, states=states)


def blocked_message(status: Status) -> str:
    first, *others = status.blockers
    message = first.repair_hint()
    if others:
        message += f" (also blocking: {', '.join(item.name + ' ' + item.state for item in others)})"
    return message


def read_status(*, busy_timeout: float | None = None) -> Status:
    """The state of every migration, read without the lock and without changing anything."""
    migrations = load_migrations()
    context = TemplateContext.from_settings()
    with clickhouse.connect(busy_timeout=busy_timeout) as client:
        status = compare(migrations, ledger.read(client, context), context)
    return replace(status, in_progress=holder_elsewhere())


class PendingSummary(TypedDict):
    ok: bool
    message: str
    pending: list[str]
    dirty: list[str]
    changed: list[str]
    unknown: list[str]


def pending_summary(*, busy_timeout: float = 3.0) -> PendingSummary:
    """ClickHouse migrations in one line, for `/healthz` (`"migrations"`) or a dashboard.

    Raises `MigrationError` (bad migration files) or `ClickHouseError` (engine unreachable
    or busy); otherwise `ok` is True only when nothing is pending, dirty, changed or unknown.
    """
    status = read_status(busy_timeout=busy_timeout)
    if status.up_to_date:
        message = f"{len(status.states)} ClickHouse migration(s) applied"
    else:
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("pending", status.pending),
                ("dirty", status.dirty),
                ("changed", status.changed),
                ("no file", status.unknown),
            )
            if names
        ]
        message = "ClickHouse migrations not up to date — " + "; ".join(parts)
    return {
        "ok": status.up_to_date,
        "message": message,
        "pending": status.pending,
        "dirty": status.dirty,
        "changed": status.changed,
        "unknown": status.unknown,
    }


def preflight(client: Client, context: TemplateContext) -> None:
    """In cluster mode, the cluster named by CLICKHOUSE_CLUSTER must exist on the server."""
    if context.cluster is None:
        return
    try:
        clusters = [
            row[0] for row in client.query("SELECT DISTINCT cluster FROM system.clusters").result_rows
        ]
    except Exception as exc:
        raise ClusterMissing(
            f"cannot read system.clusters to check CLICKHOUSE_CLUSTER={context.cluster!r}: {_describe(exc)}"
        ) from None
    if context.cluster not in clusters:
        listed = ", ".join(sorted(clusters)[:10]) or "none"
        raise ClusterMissing(
            f"CLICKHOUSE_CLUSTER is {context.cluster!r} but the ClickHouse server defines no such cluster "
            f"(system.clusters lists: {listed}); fix remote_servers or unset CLICKHOUSE_CLUSTER"
        )


@dataclass
class Outcome:
    """What one writer command did, for its summary."""

    applied: list[str] = field(default_factory=list)
    message: str = ""


class Migrator:
    """The writer side, for one command: built inside the lock with an open client."""

    def __init__(self, client: Client, context: TemplateContext, lock: MigrationLock, report: Report) -> None:
        self.client = client
        self.context = context
        self.lock = lock
        self.report = report
        self.run_id = uuid.uuid4().hex
        self.settings: dict[str, Any] = {"mutations_sync": 2, "alter_sync": 2}
        if context.cluster is not None:
            # Wait for every host of the cluster, and fail if one did not finish.
            self.settings.update(distributed_ddl_task_timeout=900, distributed_ddl_output_mode="throw")

    def status(self, migrations: list[Migration]) -> Status:
        return compare(migrations, ledger.read(self.client, self.context), self.context)

    def _row(self, migration: Migration, **values: Any) -> LedgerRow:
        base: dict[str, Any] = {
            "name": migration.name,
            "checksum": migration.checksum,
            "status": RUNNING,
            "statements_done": 0,
            "statements_total": len(migration.statements),
            "run_id": self.run_id,
            "app_version": str(getattr(settings, "OPENTRACE_VERSION", "")),
            "host": socket.gethostname(),
            "started_at": _now(),
        }
        base.update(values)
        return LedgerRow(**base)

    def execute(self, migration: Migration, start: int = 0) -> None:
        """Run `migration` from statement `start` (0-based), recording each step in the ledger."""
        total = len(migration.statements)
        began = time.monotonic()
        verb = "Resuming" if start else "Applying"
        self.report(f"{verb} {migration.name} (statements {start + 1}-{total} of {total}) ...")
        row = ledger.append(self.client, self.context, self._row(migration, statements_done=start))
        for index in range(start, total):
            # A run that lost its lock must not race the run that may now hold it.
            self.lock.ensure_held()
            sql = migration.render_statement(index, self.context)
            try:
                self.client.command(sql, settings=self.settings)
            except Exception as exc:
                error = _describe(exc)
                try:
                    ledger.append(
                        self.client,
                        self.context,
                        row.advanced(status=FAILED, statements_done=index, error=error, finished_at=_now()),
                    )
                except Exception:  # the row stays `running`, which blocks just the same
                    logger.warning("could not record the failure of %s", migration.name, exc_info=True)
                line = migration.statements[index].line
                raise StatementFailed(
                    f"ClickHouse migration {migration.name} failed at statement {index + 1} of {total} "
                    f"(line {line}): {error} — recorded as failed; fix the cause, then "
                    f"`manage.py clickhouse_migrate resume {migration.name}`",
                    name=migration.name,
                    statement=index + 1,
                ) from None
            if index + 1 < total:
                row = ledger.append(self.client, self.context, row.advanced(statements_done=index + 1))
        ledger.append(
            self.client,
            self.context,
            row.advanced(status=APPLIED, statements_done=total, error="", finished_at=_now()),
        )
        self.report(f"  {migration.name} applied in {time.monotonic() - began:.1f} s")

    def apply(self, migrations: list[Migration], to: int | None = None) -> Outcome:
        if to is not None and not any(migration.number == to for migration in migrations):
            raise MigrationError(
                f"--to {to}: no migration has that number (the last one is {len(migrations):04d})"
            )
        status = self.status(migrations)
        if status.blockers:
            raise MigrationBlocked(blocked_message(status))
        todo = [
            item.migration
            for item in status.states
            if item.state == PENDING and item.migration and (to is None or item.migration.number <= to)
        ]
        outcome = Outcome()
        for migration in todo:
            self.execute(migration)
            outcome.applied.append(migration.name)
        left = len(status.pending) - len(todo)
        outcome.message = (
            f"ClickHouse: applied {len(todo)} migration(s)"
            + (f": {', '.join(outcome.applied)}" if todo else "; already up to date" if not left else "")
            + (f"; {left} pending beyond --to {to:04d}" if left and to is not None else "")
        )
        return outcome

    def resume(self, migrations: list[Migration], name: str) -> Outcome:
        item = self.status(migrations).find(name)
        if item.state not in (RUNNING, FAILED):
            raise MigrationError(
                f"{item.name} is {item.state}, not dirty: only a running or failed migration can be resumed"
            )
        if item.migration is None:
            raise MigrationError(item.repair_hint())
        if item.file_changed:
            raise MigrationBlocked(item.repair_hint())
        self.execute(item.migration, start=item.next_statement())
        return Outcome(applied=[item.name], message=f"ClickHouse: resumed and applied {item.name}")

    def revert_plan(self, migrations: list[Migration], keep: set[str]) -> list[Migration]:
        """The migrations to undo, newest first, so that only those named in `keep` stay applied.

        Every migration the ledger records (applied, or left dirty by a failed or interrupted
        apply) and `keep` does not name is undone. Raises `Irreversible` naming the first one
        that cannot be (no down part, or no file), before anything is changed.
        """
        status = self.status(migrations)
        recorded = [item for item in status.states if item.row is not None and item.name not in keep]
        unknown = [item for item in recorded if item.migration is None]
        if unknown:
            raise Irreversible(
                f"ClickHouse migration {unknown[0].name} is recorded but this release has no file for it, "
                "so it cannot be undone; nothing was reverted",
                name=unknown[0].name,
            )
        plan = sorted((item for item in recorded if item.migration), key=lambda item: -(item.number or 0))
        for item in plan:
            assert item.migration is not None
            if item.state == CHANGED:
                raise Irreversible(
                    f"ClickHouse migration {item.name} changed since it was applied, so its down part may "
                    "not undo what ran; nothing was reverted",
                    name=item.name,
                )
            if not item.migration.reversible:
                why = item.migration.irreversible or "it has no `-- down` part"
                raise Irreversible(
                    f"ClickHouse migration {item.name} is irreversible ({why}); nothing was reverted",
                    name=item.name,
                )
        return [item.migration for item in plan if item.migration is not None]

    def undo(self, migration: Migration, reason: str) -> None:
        """Run `migration`'s down statements, then remove it from the ledger.

        Down statements are re-runnable (lint), so a revert cut off half way is finished by
        running it again: the migration stays recorded until its last down statement is done.
        """
        began = time.monotonic()
        statements = migration.render_down(self.context)
        self.report(f"Reverting {migration.name} ({len(statements)} down statement(s)) ...")
        for index, sql in enumerate(statements):
            self.lock.ensure_held()
            try:
                self.client.command(sql, settings=self.settings)
            except Exception as exc:
                line = migration.down[index].line
                raise StatementFailed(
                    f"reverting ClickHouse migration {migration.name} failed at down statement {index + 1} "
                    f"of {len(statements)} (line {line}): {_describe(exc)}; it is still recorded as applied, "
                    "and the revert can be run again",
                    name=migration.name,
                    statement=index + 1,
                ) from None
        row = self.status([migration]).find(migration.name).row
        if row is not None:
            ledger.append(
                self.client,
                self.context,
                row.advanced(is_deleted=True, reason=reason, run_id=self.run_id, finished_at=_now()),
            )
        self.report(f"  {migration.name} reverted in {time.monotonic() - began:.1f} s")

    def mark(self, migrations: list[Migration], name: str, *, applied: bool, reason: str) -> Outcome:
        reason = " ".join(reason.split())
        if not reason:
            raise MigrationError("--reason must say why the ledger is being changed by hand")
        if len(reason) > 1000:
            raise MigrationError("--reason is limited to 1000 characters")
        item = self.status(migrations).find(name)
        if applied:
            if item.migration is None:
                raise MigrationError(
                    f"{item.name} has no file, so it cannot be marked applied; "
                    f'`mark {item.name} --not-applied --reason "..."` forgets it'
                )
            if item.state == APPLIED:
                return Outcome(message=f"{item.name} is already applied; nothing changed")
            total = len(item.migration.statements)
            previous = item.row
            ledger.append(
                self.client,
                self.context,
                self._row(
                    item.migration,
                    status=APPLIED,
                    statements_done=total,
                    reason=reason,
                    started_at=previous.started_at if previous else _now(),
                    finished_at=_now(),
                ),
            )
            return Outcome(message=f"{item.name} marked applied ({reason})")
        if item.row is None:
            return Outcome(message=f"{item.name} is not in the ledger; it is already not applied")
        ledger.append(
            self.client,
            self.context,
            item.row.advanced(is_deleted=True, reason=reason, run_id=self.run_id, finished_at=_now()),
        )
        return Outcome(
            message=f"{item.name} marked not applied ({reason}); `apply` will run it from the start"
        )


@contextmanager
def migrator(lock: MigrationLock, report: Report = _quiet) -> Iterator[tuple[Migrator, list[Migration]]]:
    """Files loaded, ClickHouse open (closed afterwards), cluster checked, ledger present."""
    migrations = load_migrations()
    context = TemplateContext.from_settings()
    with clickhouse.connect() as client:
        preflight(client, context)
        ledger.ensure(client, context)
        yield Migrator(client, context, lock, report), migrations


def apply(lock: MigrationLock, *, to: int | None = None, report: Report = _quiet) -> Outcome:
    with migrator(lock, report) as (runner, migrations):
        return runner.apply(migrations, to=to)


def resume(lock: MigrationLock, name: str, *, report: Report = _quiet) -> Outcome:
    with migrator(lock, report) as (runner, migrations):
        return runner.resume(migrations, name)


def mark(lock: MigrationLock, name: str, *, applied: bool, reason: str) -> Outcome:
    with migrator(lock) as (runner, migrations):
        return runner.mark(migrations, name, applied=applied, reason=reason)
