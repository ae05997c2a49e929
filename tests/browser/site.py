"""The end-to-end harness's install (`testing.e2e.Site`), plus what the browser needs.

`Site` builds an upstream repository from this tree, serves its v1.1.5 clone with
`scripts/run_local.py` and runs the host agent in `local` mode beside it. Here it also gets
named staff accounts and release notes worth reading in the registry document. Its base URL
(password-reset links must point at it) is not set: `run_local.py` derives it from the port.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from testing.e2e import Site, add_release
from testing.registry_server import full_document, iso_in

ADMIN_USER = "admin"
ADMIN_EMAIL = "admin@localhost"  # ensure_admin's default for the user "admin"

# Named staff accounts without any permission, created once for the package's site.
VIEWER = ("viewer", "viewer@example.com", "viewer-Pa55-word")
FORGETFUL = ("forgetful", "forgetful@example.com", "the-old-Pa55word")

# The releases the package's site has tagged upstream: a good one and one broken at healthcheck.
OFFERED_VERSION = "1.2.0"
BROKEN_VERSION = "1.2.2"
NOTES = {
    OFFERED_VERSION: "Faster funnels.\n\nSee https://opentrace.example.com/releases/1.2.0 for details.",
    BROKEN_VERSION: "Retention cohorts, and a new index on events.",
}


class BrowserSite(Site):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def running_version(self) -> str | None:
        return self.health()[1]

    def create_staff(self, *users: tuple[str, str, str], permissions: tuple[str, ...] = ()) -> None:
        """Staff accounts (username, email, password) with just these `updates` permissions."""
        code = (
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Permission\n"
            "granted = Permission.objects.filter(content_type__app_label='updates',"
            f" codename__in={list(permissions)!r})\n"
            f"for name, email, password in {list(users)!r}:\n"
            "    user = get_user_model().objects.create_user(name, email, password, is_staff=True)\n"
            "    user.user_permissions.add(*granted)\n"
        )
        self.manage("shell", "-c", code)

    def publish(self, version: str, notes: str, breakage: str | None = None) -> None:
        """Tag the release upstream (see `add_release`); the registry does not offer it yet."""
        self.commits[version] = add_release(self.upstream, version, breakage)
        self.notes[version] = notes

    def offer(self, *versions: str) -> None:
        # Each document gets a higher meta_version: a lower one is refused as a rollback attack.
        self.registry.meta_version += 1
        releases: list[dict[str, Any]] = [
            {
                "version": version,
                "notes": self.notes[version],
                "git_commit": self.commits[version],
                "published_at": iso_in(-timedelta(days=1)),
            }
            for version in versions
        ]
        document = full_document(*releases, meta_version=self.registry.meta_version)
        self.registry.body = json.dumps(document).encode()
