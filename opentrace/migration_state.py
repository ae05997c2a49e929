"""The migration state of both databases, and going back to one (SPEC §7, §9).

`migrate_all --state` prints `current()`: the applied Django migrations per app and the
applied ClickHouse migrations, as JSON:

    {"django": {"auth": ["0001_initial", ...], "updates": [...]}, "clickhouse": ["0001_events", ...]}

`migrate_all --revert-to FILE`, run with the newer code, undoes everything applied since a
state saved that way: ClickHouse first (its down parts, newest first), then Django (its own
reverse operations, through the migration executor). Both plans are made and checked before
either database is touched, so an irreversible migration in the way changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration as DjangoMigration

from opentrace.clickhouse import migrator
from opentrace.clickhouse.errors import Irreversible, MigrationError
from opentrace.clickhouse.ledger import APPLIED
from opentrace.clickhouse.lock import MigrationLock

REVERT_REASON = "reverted by migrate_all --revert-to"
MAX_STATE_BYTES = 1024 * 1024


class State(TypedDict):
    django: dict[str, list[str]]
    clickhouse: list[str]


def _executor() -> MigrationExecutor:
    return MigrationExecutor(connections[DEFAULT_DB_ALIAS])


def django_applied() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app_label, name in sorted(_executor().recorder.applied_migrations()):
        applied.setdefault(app_label, []).append(name)
    return applied


def clickhouse_applied() -> list[str]:
    status = migrator.read_status()
    return [item.name for item in status.states if item.row is not None and item.row.status == APPLIED]


def current() -> State:
    return {"django": django_applied(), "clickhouse": clickhouse_applied()}


def parse(text: str) -> State:
    """A state as `--state` printed it; `MigrationError` naming what is wrong otherwise."""
    if len(text.encode("utf-8", "replace")) > MAX_STATE_BYTES:
        raise MigrationError("the saved migration state is larger than 1 MiB")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MigrationError(f"the saved migration state is not JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) != {"django", "clickhouse"}:
        raise MigrationError('the saved migration state must be {"django": {...}, "clickhouse": [...]}')
    apps, clickhouse = data["django"], data["clickhouse"]
    if not isinstance(apps, dict) or not all(
        isinstance(app, str) and isinstance(names, list) and all(isinstance(n, str) for n in names)
        for app, names in apps.items()
    ):
        raise MigrationError('"django" in the saved migration state must map app labels to lists of names')
    if not isinstance(clickhouse, list) or not all(isinstance(name, str) for name in clickhouse):
        raise MigrationError('"clickhouse" in the saved migration state must be a list of names')
    return {"django": apps, "clickhouse": clickhouse}


@dataclass
class DjangoRevert:
    targets: list[tuple[str, str | None]] = field(default_factory=list)
    plan: list[tuple[DjangoMigration, bool]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [f"{migration.app_label}.{migration.name}" for migration, _ in self.plan]


def _irreversible_operation(migration: DjangoMigration) -> str | None:
    for operation in migration.operations:
        if not operation.reversible:
            return operation.describe()
    return None


def django_revert_plan(keep: dict[str, list[str]]) -> DjangoRevert:
    """What Django would unapply to get back to `keep`; `Irreversible` when it cannot."""
    executor = _executor()
    graph = executor.loader.graph
    applied = set(executor.recorder.applied_migrations())
    wanted = {(app, name) for app, names in keep.items() for name in names}
    extra = applied - wanted
    if not extra:
        return DjangoRevert()
    missing = sorted(key for key in extra if key not in graph.nodes)
    if missing:
        app, name = missing[0]
        raise Irreversible(
            f"Django migration {app}.{name} is applied but this release has no file for it, so it "
            "cannot be undone; nothing was reverted",
            name=f"{app}.{name}",
        )
    targets: list[tuple[str, str | None]] = []
    for app in sorted({app for app, _ in extra}):
        kept = [key for key in wanted if key[0] == app and key in graph.nodes]
        # The newest migration kept: no other kept one of the app depends on it.
        leaves = [key for key in kept if not any(key in graph.node_map[other].parents for other in kept)]
        if len(leaves) > 1:
            raise MigrationError(
                f"the saved state keeps {len(leaves)} leaf migrations of {app}; cannot revert"
            )
        targets.append(leaves[0] if leaves else (app, None))
    plan = executor.migration_plan(targets)
    undone = {(migration.app_label, migration.name) for migration, backwards in plan if backwards}
    if not all(backwards for _, backwards in plan) or undone - extra:
        raise MigrationError(
            "reverting Django to the saved state would also unapply migrations applied before it; "
            "nothing was reverted"
        )
    for migration, _ in plan:
        operation = _irreversible_operation(migration)
        if operation is not None:
            name = f"{migration.app_label}.{migration.name}"
            raise Irreversible(
                f"Django migration {name} is irreversible ({operation} cannot be reversed); "
                "nothing was reverted",
                name=name,
            )
    return DjangoRevert(targets=targets, plan=plan)


@dataclass
class Reverted:
    clickhouse: list[str]
    django: list[str]

    @property
    def message(self) -> str:
        ch = ", ".join(self.clickhouse) if self.clickhouse else "nothing to revert"
        dj = ", ".join(self.django) if self.django else "nothing to revert"
        return f"ClickHouse: reverted {ch}\nDjango: reverted {dj}"


def revert_to(state: State, lock: MigrationLock, report: Callable[[str], None]) -> Reverted:
    """Undo everything applied since `state`, ClickHouse first, checked whole beforehand."""
    with migrator.migrator(lock, report) as (runner, migrations):
        clickhouse_plan = runner.revert_plan(migrations, set(state["clickhouse"]))
        django_plan = django_revert_plan(state["django"])
        for migration in clickhouse_plan:
            runner.undo(migration, REVERT_REASON)
    if django_plan.plan:
        report(f"Reverting Django: {', '.join(django_plan.names)} ...")
        executor = _executor()
        executor.migrate(django_plan.targets, plan=executor.migration_plan(django_plan.targets))
    return Reverted([m.name for m in clickhouse_plan], django_plan.names)
