"""`manage.py apply_update_policy`: one pass of the update policy now (what beat runs every minute)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from updates import schedule
from updates.models import ScheduledInstall


class Command(BaseCommand):
    help = (
        "Run one pass of the update policy now (withdrawn releases, scheduled installs whose time "
        "has come, the next hop of an upgrade path, automatic installs), as Celery beat does every "
        "minute, and print the scheduled install's state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        changed = schedule.run_once()
        latest = ScheduledInstall.objects.order_by("-created_at").first()
        result = {
            "changed": changed,
            "scheduled": None
            if latest is None
            else {
                "id": str(latest.pk),
                "status": latest.status,
                "target_version": latest.target_version,
                "hops": latest.hops,
                "installed_hops": latest.installed_hops,
                "run_ids": latest.run_ids,
                "not_before": latest.not_before.isoformat(),
                "message": latest.message,
            },
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        elif latest is None:
            self.stdout.write("no scheduled install")
        else:
            self.stdout.write(f"{latest}: {latest.message or latest.not_before.isoformat()}")
