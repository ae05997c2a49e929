"""Create the first admin account if there is none; used by `make run` and `install.sh`.

Credentials come from OPENTRACE_ADMIN_USER / OPENTRACE_ADMIN_PASSWORD / OPENTRACE_ADMIN_EMAIL;
without a password one is generated, kept in `<DATA_DIR>/secrets/admin_password` (0600)
and printed once; later starts only say where it is. An existing account is never changed.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from opentrace.secrets import load_or_create, secrets_dir


class Command(BaseCommand):
    help = "Create the initial admin user if it does not exist and print its credentials."

    def handle(self, *args: object, **options: object) -> None:
        username = os.environ.get("OPENTRACE_ADMIN_USER", "admin").strip() or "admin"
        email = os.environ.get("OPENTRACE_ADMIN_EMAIL", f"{username}@localhost").strip()
        password_file = secrets_dir(settings.DATA_DIR) / "admin_password"
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            # Never generate or print a password for an account we did not just create.
            self.stdout.write(f"Admin user {username!r} exists; its password is unchanged.")
            if password_file.exists():
                self.stdout.write(f"(The password generated when it was created is in {password_file}.)")
            return
        password = os.environ.get("OPENTRACE_ADMIN_PASSWORD", "")
        if not password:
            password = load_or_create(settings.DATA_DIR, "admin_password", lambda: secrets.token_urlsafe(12))
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Created admin user {username!r} with password {password}"))
