from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")

application = get_wsgi_application()


def _warm_up() -> None:
    """Load what the first request would, so a new worker answers at once after a reload.

    It also fixes which migrations this release ships (opentrace.health) before an update
    puts the next release's files on disk.
    """
    from django.urls import get_resolver

    from opentrace.health import release_migrations

    release_migrations()
    get_resolver().url_patterns  # noqa: B018 - imports every app's URLconf and views


_warm_up()
