"""`manage.py rotate_secrets`: re-encrypt every stored secret under the newest key.

Rotation: put the new key first in OPENTRACE_SECRETS_KEY (keep the old one after it),
restart, run this command, then remove the old key. Exit status 1 when a secret could not
be decrypted with any configured key (it is left untouched and named).

The SMTP password is this app's; other apps' secrets (the notification channels' URLs and
signing secrets) are found without naming those apps: every installed model with a
`rotate_all_secrets()` classmethod returning (rotated, unchanged, problems) takes part.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from smtpconfig.crypto import SecretKeyError
from smtpconfig.models import SmtpSettings


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (the SMTP password, the notification channels' URLs and "
        "secrets) under the newest OPENTRACE_SECRETS_KEY."
    )

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
        for model in apps.get_models():
            rotate = getattr(model, "rotate_all_secrets", None)
            if rotate is None:
                continue
            changed, same, trouble = rotate()
            rotated, unchanged = rotated + changed, unchanged + same
            problems.extend(trouble)
        self.stdout.write(f"Re-encrypted {rotated} secret(s); {unchanged} had none stored.")
        if problems:
            raise CommandError("; ".join(problems))
