"""`manage.py rotate_secrets`: re-encrypt every stored secret under the newest key.

Rotation: put the new key first in OPENTRACE_SECRETS_KEY (keep the old one after it),
restart, run this command, then remove the old key. Exit status 1 when a secret could not
be decrypted with any configured key (it is left untouched and named).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from smtpconfig.crypto import SecretKeyError
from smtpconfig.models import SmtpSettings


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (the SMTP password) under the newest OPENTRACE_SECRETS_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = unchanged = 0
        problems: list[str] = []
        for row in SmtpSettings.objects.all():
            try:
                if row.rotate_secrets():
                    rotated += 1
                else:
                    unchanged += 1
            except SecretKeyError as exc:
                problems.append(f"SMTP password: {exc}")
        self.stdout.write(f"Re-encrypted {rotated} secret(s); {unchanged} had none stored.")
        if problems:
            raise CommandError("; ".join(problems))
