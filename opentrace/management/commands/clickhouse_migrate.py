"""`manage.py clickhouse_migrate status|plan|apply|resume|mark|lint` (SPEC §9, docs/migrations.md).

Exit codes: 0 success; 1 a failure, or `status --check` finding anything pending, dirty,
changed or without a file; 2 `status --check` could not read the state. Every error is one
line (a `CommandError`), never a traceback.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from opentrace.clickhouse import client as clickhouse
from opentrace.clickhouse import migrator
from opentrace.clickhouse.catalog import TemplateContext, load_migrations
from opentrace.clickhouse.errors import MigrationError
from opentrace.clickhouse.lint import lint
from opentrace.clickhouse.lock import migration_lock
from opentrace.redact import redact

DEFAULT_LOCK_TIMEOUT = 60.0


def one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))[:500]


def add_lock_timeout(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help=f"wait for another migration run to finish (default {DEFAULT_LOCK_TIMEOUT:g}; 0 = fail fast)",
    )


def lock_timeout(options: dict[str, Any]) -> float:
    value = options["lock_timeout"]
    if not 0 <= value <= 86400:
        raise CommandError("--lock-timeout must be between 0 and 86400 seconds")
    return float(value)


class Command(BaseCommand):
    help = "Show, plan, apply and repair OpenTrace's ClickHouse migrations."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        status = actions.add_parser("status", help="the state of every migration")
        status.add_argument("--check", action="store_true", help="exit 1 unless everything is applied")
        status.add_argument("--json", action="store_true", help="print the state as JSON")

        plan = actions.add_parser("plan", help="what `apply` would run")
        plan.add_argument("--sql", action="store_true", help="print the rendered statements")

        apply = actions.add_parser("apply", help="apply the pending migrations")
        apply.add_argument("--to", type=int, metavar="N", help="stop after migration number N")
        add_lock_timeout(apply)

        resume = actions.add_parser("resume", help="finish a dirty (running or failed) migration")
        resume.add_argument("name")
        add_lock_timeout(resume)

        mark = actions.add_parser("mark", help="record a migration as applied or not applied by hand")
        mark.add_argument("name")
        which = mark.add_mutually_exclusive_group(required=True)
        which.add_argument("--applied", action="store_true")
        which.add_argument("--not-applied", action="store_true")
        mark.add_argument("--reason", required=True, help="why (kept in the ledger)")
        add_lock_timeout(mark)

        actions.add_parser("lint", help="check the migration files against the rules")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, f"do_{action}")(options)
        except MigrationError as exc:
            raise CommandError(str(exc), returncode=2 if action == "status" else 1) from None
        except clickhouse.ClickHouseError as exc:
            raise CommandError(f"ClickHouse: {exc}", returncode=2 if action == "status" else 1) from None
        except CommandError:
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still one line (--traceback shows more)
            raise CommandError(
                f"unexpected {type(exc).__name__}: {one_line(exc)}", returncode=2 if action == "status" else 1
            ) from exc

    # --- readers -------------------------------------------------------------------

    def do_status(self, options: dict[str, Any]) -> None:
        status = migrator.read_status()
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(), indent=2))
        else:
            self.stdout.write(self.format_status(status))
        if options["check"] and not status.up_to_date:
            raise CommandError(f"ClickHouse migrations are not up to date: {status.summary()}", returncode=1)

    def format_status(self, status: migrator.Status) -> str:
        where = f"database {status.database}" + (f" on cluster {status.cluster}" if status.cluster else "")
        lines = [f"ClickHouse migrations ({where}):"]
        if not status.states:
            lines.append("  (no migrations)")
        width = max((len(item.name) for item in status.states), default=0)
        for item in status.states:
            row = item.row
            total = len(item.migration.statements) if item.migration else (row.statements_total if row else 0)
            done = row.statements_done if row else 0
            detail = ""
            if row and item.state != migrator.PENDING:
                when = row.finished_at or row.started_at
                detail = f"  {when:%Y-%m-%d %H:%M:%S}Z  {row.app_version or '-'}"
                if row.reason:
                    detail += f"  reason: {row.reason}"
                if row.error:
                    detail += f"  error: {migrator.excerpt(row.error, 200)}"
            lines.append(f"  {item.name:<{width}}  {item.state:<8}  {done}/{total}{detail}")
        lines.append(status.summary())
        if status.in_progress:
            lines.append(
                f"A migration run is in progress ({status.in_progress}): "
                "a `running` migration may still be working; let it finish before repairing anything."
            )
        for blocker in status.blockers:
            lines.append(f"! {blocker.repair_hint()}")
        return "\n".join(lines)

    def do_plan(self, options: dict[str, Any]) -> None:
        status = migrator.read_status()
        context = TemplateContext.from_settings()
        if status.blockers:
            self.stdout.write(f"apply is blocked: {migrator.blocked_message(status)}")
        todo = [item for item in status.states if item.state == migrator.PENDING and item.migration]
        if not todo:
            self.stdout.write("Nothing to apply: every ClickHouse migration is applied.")
            return
        self.stdout.write(f"apply would run {len(todo)} migration(s):")
        for item in todo:
            assert item.migration is not None
            contract = ", contract" if item.migration.contract else ""
            self.stdout.write(f"  {item.name} ({len(item.migration.statements)} statement(s){contract})")
            if options["sql"]:
                for number, sql in enumerate(item.migration.rendered(context), start=1):
                    self.stdout.write(f"-- {item.name} statement {number}\n{sql};\n")

    def do_lint(self, options: dict[str, Any]) -> None:
        migrations = load_migrations()
        problems = lint(migrations)
        for problem in problems:
            self.stderr.write(str(problem))
        if problems:
            raise CommandError(f"{len(problems)} problem(s) in the ClickHouse migrations")
        self.stdout.write(f"{len(migrations)} ClickHouse migration(s) follow the rules.")

    # --- writers (under the migration lock) -------------------------------------------

    def do_apply(self, options: dict[str, Any]) -> None:
        with migration_lock(lock_timeout(options)) as lock:
            outcome = migrator.apply(lock, to=options["to"], report=self.stdout.write)
        self.stdout.write(outcome.message)

    def do_resume(self, options: dict[str, Any]) -> None:
        with migration_lock(lock_timeout(options)) as lock:
            outcome = migrator.resume(lock, options["name"], report=self.stdout.write)
        self.stdout.write(outcome.message)

    def do_mark(self, options: dict[str, Any]) -> None:
        with migration_lock(lock_timeout(options)) as lock:
            outcome = migrator.mark(
                lock, options["name"], applied=options["applied"], reason=options["reason"]
            )
        self.stdout.write(outcome.message)
