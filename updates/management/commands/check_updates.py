from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState


class Command(BaseCommand):
    help = (
        "Check the version registry now. Exit 0 when the check succeeded (update or not), 1 when it failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        check = run_check(RegistryCheck.Trigger.COMMAND)
        state = RegistryState.load()
        offer = state.offer()
        failed = check.outcome == RegistryCheck.Outcome.FAILED
        result = {
            "current": settings.OPENTRACE_VERSION,
            "latest": offer.latest.version if offer.latest else None,
            "update_available": offer.update_available,
            "severity": offer.latest.severity if offer.latest else None,
            "verified": state.verified if state.last_success_at else False,
            "error": check.error if failed else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(f"running {result['current']}")
            if failed:
                self.stdout.write(f"check failed: {check.error}")
            if result["latest"]:
                note = " (skipped)" if offer.skipped else ""
                self.stdout.write(f"latest {result['latest']} ({result['severity']}){note}")
            elif not failed:
                self.stdout.write("up to date")
            if not result["verified"]:
                self.stdout.write("registry information is unverified (no OPENTRACE_REGISTRY_KEYS)")
        if failed:
            raise SystemExit(1)
