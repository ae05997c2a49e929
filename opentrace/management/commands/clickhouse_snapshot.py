"""`manage.py clickhouse_snapshot freeze NAME | unfreeze NAME | restore DIR | verify DIR` (SPEC §8).

What the host agent runs, with the project's Python, for ClickHouse's part of a backup set
(see `opentrace.clickhouse.snapshot`). `freeze` and `verify` print JSON on stdout.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from opentrace.clickhouse import snapshot
from opentrace.clickhouse.client import ClickHouseError


class Command(BaseCommand):
    help = "ClickHouse snapshots for backup sets: freeze, unfreeze, restore, verify."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["freeze", "unfreeze", "restore", "verify"])
        parser.add_argument("target", help="a snapshot name (freeze, unfreeze) or a staged directory")

    def handle(self, *args: Any, **options: Any) -> None:
        action, target = options["action"], options["target"]
        try:
            if action == "freeze":
                self.stdout.write(json.dumps(snapshot.freeze(target)))
            elif action == "unfreeze":
                snapshot.unfreeze(target)
            elif action == "restore":
                self.stdout.write(snapshot.restore(Path(target)))
            else:
                self.stdout.write(json.dumps(snapshot.verify(Path(target))))
        except (snapshot.SnapshotError, ClickHouseError) as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:  # the engine's own errors: one line for the agent's log
            raise CommandError(f"{type(exc).__name__}: {exc}"[:2000]) from None
