"""Create the first admin account if there is none; used by `make run` and `install.sh`.

Credentials come from OPENTRACE_ADMIN_USER / OPENTRACE_ADMIN_PASSWORD / OPENTRACE_ADMIN_EMAIL;
without a password one is generated, kept in `<DATA_DIR>/secrets/admin_password` (0600)
and printed, so the next start prints the same one. An existing account is never changed.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from opentrace.secrets import load_or_create


class Command(BaseCommand):
    help = "Create the initial admin user if it does not exist and print its credentials."

    def handle(self, *args: object, **options: object) -> None:
        username = os.environ.get("OPENTRACE_ADMIN_USER", "admin").strip() or "admin"
        email = os.environ.get("OPENTRACE_ADMIN_EMAIL", f"{username}@localhost").strip()
        password = os.environ.get("OPENTRACE_ADMIN_PASSWORD", "")
        if not password:
            password = load_or_create(settings.DATA_DIR, "admin_password", lambda: secrets.token_urlsafe(12))
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user {username!r} exists; its password is unchanged.")
            if not os.environ.get("OPENTRACE_ADMIN_PASSWORD"):
                self.stdout.write(f"(Generated password, if it was never changed: {password})")
            return
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Created admin user {username!r} with password {password}"))
