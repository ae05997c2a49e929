"""`manage.py migrate_all`: Django's `migrate`, then ClickHouse `apply`, under one lock.

PostgreSQL (or SQLite) goes first because its migrations are transactional: a failure
there leaves nothing half done, and ClickHouse is not touched. The host agent's `migrate`
step and `make run` call this command. It prints one summary and exits non-zero naming the
migration that failed. It is never run from `post_migrate`: ClickHouse changes only when an
operator or the agent asks for it.

`--state` prints the applied migrations of both databases as JSON (with `--check-compatible`,
after the backward-compatibility checks: `lintmigrations --unapplied-migrations`, then the
ClickHouse lint, exiting `contract.migrations.INCOMPATIBLE` when they fail; the host agent
runs both in one container before `migrate`), and `--revert-to FILE`
(`-` reads standard input) undoes everything applied since such a state, ClickHouse first,
exiting 1 naming the first irreversible migration without changing anything when one is in
the way (SPEC §9; `opentrace.migration_state`). The host agent saves the state before its
`migrate` step and reverts to it when the update rolls back.
"""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from contract.migrations import INCOMPATIBLE
from opentrace import migration_state
from opentrace.clickhouse import client as clickhouse
from opentrace.clickhouse import migrator
from opentrace.clickhouse.catalog import load_migrations
from opentrace.clickhouse.errors import MigrationError
from opentrace.clickhouse.lint import lint
from opentrace.clickhouse.lock import migration_lock
from opentrace.management.commands.clickhouse_migrate import add_lock_timeout, lock_timeout, one_line
from opentrace.redact import redact


def django_plan() -> list[str]:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, backwards in plan if not backwards]


class Command(BaseCommand):
    help = "Apply Django's migrations, then ClickHouse's, under the migration lock."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_lock_timeout(parser)
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--state", action="store_true", help="print the applied Django and ClickHouse migrations as JSON"
        )
        which.add_argument(
            "--revert-to",
            metavar="FILE",
            help="undo every migration applied since the state in FILE (printed by --state; - for stdin)",
        )
        parser.add_argument(
            "--check-compatible",
            action="store_true",
            help=f"with --state: first check that the unapplied migrations are backward compatible "
            f"(exit {INCOMPATIBLE} when they are not)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbose = options["verbosity"] > 1

        def report(message: str) -> None:
            if verbose:
                self.stdout.write(message)

        vendor = connections[DEFAULT_DB_ALIAS].vendor
        if options["check_compatible"] and not options["state"]:
            raise CommandError("--check-compatible goes with --state")
        try:
            if options["state"]:
                if options["check_compatible"]:
                    self.check_compatible()
                self.stdout.write(json.dumps(migration_state.current(), sort_keys=True))
                return
            if options["revert_to"]:
                state = migration_state.parse(self.read_state(options["revert_to"]))
                with migration_lock(lock_timeout(options)) as lock:
                    reverted = migration_state.revert_to(state, lock, report)
                self.stdout.write(reverted.message)
                return
            with migration_lock(lock_timeout(options)) as lock:
                planned = self.migrate_django(vendor, verbose)
                outcome = migrator.apply(lock, report=report)
        except MigrationError as exc:
            raise CommandError(str(exc)) from None
        except clickhouse.ClickHouseError as exc:
            raise CommandError(f"ClickHouse: {exc}") from None
        except CommandError:
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still one line (--traceback shows more)
            raise CommandError(f"unexpected {type(exc).__name__}: {one_line(exc)}") from exc
        if planned:
            django_line = f"Django ({vendor}): applied {len(planned)} migration(s): {', '.join(planned)}"
        else:
            django_line = f"Django ({vendor}): already up to date"
        self.stdout.write(f"{django_line}\n{outcome.message}")

    def check_compatible(self) -> None:
        """django-migration-linter on the unapplied Django migrations, then the ClickHouse lint.

        The linter prints its report; it goes to stderr, so that the state stays the last
        line of stdout. Both run, so that a refusal names every problem at once.
        """
        report = StringIO()
        failed = []
        with redirect_stdout(report):
            try:
                call_command("lintmigrations", "--unapplied-migrations", "--quiet", "ok", "ignore")
            except SystemExit as exc:  # the linter exits 1 when a migration is not backward compatible
                if exc.code:
                    failed.append("Django")
        if lines := report.getvalue().strip():
            self.stderr.write(lines)
        problems = lint(load_migrations())
        for problem in problems:
            self.stderr.write(str(problem))
        if problems:
            failed.append("ClickHouse")
        if failed:
            raise CommandError(
                f"not backward compatible with the running release: the {' and '.join(failed)} "
                "migrations fail the checks (docs/migrations.md)",
                returncode=INCOMPATIBLE,
            )

    def read_state(self, source: str) -> str:
        try:
            if source == "-":
                return sys.stdin.read(migration_state.MAX_STATE_BYTES + 1)
            with Path(source).open(encoding="utf-8") as handle:
                return handle.read(migration_state.MAX_STATE_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the saved migration state {source}: {exc}") from None

    def migrate_django(self, vendor: str, verbose: bool) -> list[str]:
        planned = django_plan()
        output = StringIO()
        try:
            call_command(
                "migrate", interactive=False, verbosity=1 if verbose else 0, stdout=output, stderr=output
            )
        except Exception as exc:
            # Django applied the plan in order; the first one still unapplied is the one that failed.
            try:
                remaining = set(django_plan())
            except Exception:
                remaining = set(planned)
            failing = next((name for name in planned if name in remaining), "an unknown migration")
            detail = redact(" ".join(str(exc).split()))[:500] or type(exc).__name__
            raise CommandError(
                f"Django migration {failing} failed on {vendor}: {type(exc).__name__}: {detail} "
                "(ClickHouse was not touched)"
            ) from None
        finally:
            if verbose:
                self.stdout.write(output.getvalue().rstrip())
        return planned
