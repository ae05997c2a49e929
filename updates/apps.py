from __future__ import annotations

from django.apps import AppConfig


class UpdatesConfig(AppConfig):
    name = "updates"
    verbose_name = "Updates"

    def ready(self) -> None:
        # Update notices hang off the update flow's signals; the receivers only enqueue.
        from updates import notices

        notices.connect()
        # The channels' admin lives in its own package, which admin.autodiscover() (it
        # imports `updates.admin` only) does not see.
        from updates.channels import admin  # noqa: F401
