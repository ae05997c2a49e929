from __future__ import annotations

from django.apps import AppConfig


class SmtpConfigConfig(AppConfig):
    name = "smtpconfig"
    verbose_name = "Email"

    def ready(self) -> None:
        # Update notices hang off the update flow's signals; the receivers only enqueue.
        from updates import notifications

        notifications.connect()
