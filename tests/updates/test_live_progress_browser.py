"""The System updates page in a real browser: progress survives a server restart and shows the outcome."""

from __future__ import annotations

import os
import shutil

import pytest
from django.db import connections
from django.test import Client

from tests.updates.agent_client import event, post_events
from tests.updates.factories import make_run

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary on PATH"),
]


@pytest.fixture
def browser_page():
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still synchronous, so Django's async-safety guard does not apply here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()
        # While Playwright's loop runs, Django keys connections by context, not by thread:
        # close the ones this test opened here, where they are visible.
        connections.close_all()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_progress_keeps_polling_through_an_outage_and_shows_the_outcome(live_server, superuser, browser_page):
    page = browser_page
    run = make_run(user=superuser)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/updates/system/")
    page.fill("#id_username", "root_admin")
    page.fill("#id_password", "correct-horse-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#run-progress")
    assert page.text_content("#run-status") == "Requested"

    # The web service is down (deploy): the first poll fails, the page says so and keeps trying.
    outage = {"left": 1}

    def restart(route):
        if outage["left"]:
            outage["left"] -= 1
            route.abort()
        else:
            route.continue_()

    page.route("**/admin/updates/system/progress/**", restart)
    page.wait_for_function(
        "document.getElementById('run-connection').textContent.indexOf('Waiting for the server') !== -1"
    )

    agent = Client()
    post_events(
        agent,
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="deploy", state="started"),
        event(3, "log", step="deploy", lines=["<img src=x onerror=alert(1)> recreating web"]),
        event(4, "step", step="deploy", state="succeeded"),
        event(5, "run", state="succeeded"),
    )
    page.wait_for_function("document.getElementById('run-status').textContent === 'Succeeded'")
    assert "OpenTrace 1.2.0 is installed." in page.text_content("#run-outcome")
    assert "<img src=x onerror=alert(1)> recreating web" in page.text_content("#run-log")
    assert page.query_selector("#run-log img") is None
    assert "deploy" in page.text_content("#run-steps")
    assert page.text_content("#run-connection") == "Finished."
