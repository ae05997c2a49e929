"""Admin pages in Chromium against Django's live test server: the fast half of the browser tests.

The pages' own behaviour (what they say, how the live script reacts to the agent's reports,
how they lay out at 1280 and 390 px) needs a real browser but not a real install: Django's
`live_server` serves this tree on the test database, the agent's side is the signed agent API
(testing.agent_client) called in the test, and the registry is a server on 127.0.0.1.
The slow half, tests/browser/test_update_journey.py, runs whole updates on a real install.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client

from testing.agent_client import HEARTBEAT, post

WIDTHS = {"desktop": 1280, "mobile": 390}


def heartbeat(*, busy: bool = False, run_id: Any = None) -> None:
    """The host agent's heartbeat, signed and posted like the agent does (SPEC §6)."""
    from django.utils import timezone

    response = post(
        Client(),
        HEARTBEAT,
        {
            "agent_id": "docker-host-1",
            "agent_version": "1.0",
            "deployed_version": settings.OPENTRACE_VERSION,
            "busy": busy,
            "run_id": str(run_id) if run_id else None,
            "at": timezone.now().isoformat(),
        },
    )
    assert response.status_code == 200, response.content


def open_as(browser: Any, live_server: Any, user: Any, width: int) -> Any:
    """A browser page at `width` px, logged in as `user` (its session cookie, no login form)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    host = live_server.url.split("://", 1)[1].split(":")[0]
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
          "domain": host, "path": "/"}]
    )  # fmt: skip
    return context.new_page()


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))
