"""The System updates page in a real browser: progress survives a server restart and shows the outcome."""

from __future__ import annotations

import os
import shutil

import pytest
from django.db import connections
from django.test import Client

from testing.agent_client import event, post_events
from testing.factories import make_run

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
        "(document.getElementById('run-connection')?.textContent || '')"
        ".indexOf('Waiting for the server') !== -1"
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
    page.wait_for_function("document.getElementById('run-status')?.textContent === 'Succeeded'")
    # The page loads itself again once the run ended: the outcome is the server's.
    # (While the page loads again there is a moment with no document body: no element yet.)
    page.wait_for_function(
        "(document.getElementById('run-headline')?.textContent || '').indexOf('Now on 1.2.0') === 0"
    )
    assert "<img src=x onerror=alert(1)> recreating web" in page.text_content("#run-log")
    assert page.query_selector("#run-log img") is None
    assert "deploy" in page.text_content("#run-steps")


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/updates/system/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#run-progress")


def test_cancel_and_the_install_refusal_follow_the_run_as_it_moves_on(
    live_server, operator, offered, agent_online, browser_page
):
    page = browser_page
    expect = playwright.expect
    run = make_run(user=operator)
    log_in(page, live_server, "operator", "correct-horse-4")
    cancel = page.get_by_role("button", name="Cancel this update")
    install = page.get_by_role("button", name="Install update 1.2.0…")
    refusal = page.locator("#install-refusal")
    expect(cancel).to_be_visible()
    expect(refusal).to_contain_text("The update to 1.2.0 is in progress below")
    expect(install).to_be_hidden()
    expect(page.locator("#run-headline")).to_have_text("Waiting for the host agent to pick up the update.")

    # The agent claimed it: the server would refuse a cancel now, so the button goes.
    agent = Client()
    post_events(
        agent, run.pk, event(1, "run", state="running"), event(2, "step", step="deploy", state="started")
    )
    expect(page.locator("#run-status")).to_have_text("Running")
    expect(cancel).to_have_count(0)
    expect(refusal).to_be_visible()  # still true while the run goes on
    expect(install).to_be_hidden()

    post_events(
        agent,
        run.pk,
        event(3, "step", step="deploy", state="failed", message="web never came up"),
        event(4, "run", state="rolled_back", message="deploy failed: web never came up"),
    )
    expect(page.locator("#run-status")).to_have_text("Rolled back")
    # The page loaded itself again: the release that just failed is offered as a retry.
    retry = page.get_by_role("button", name="Try 1.2.0 again…")
    expect(retry).to_be_visible()
    expect(refusal).to_be_hidden()
    live = page.text_content("#run-headline")
    assert live == (
        "Still on 1.1.5 — 1.2.0 failed at deploy: web never came up; "
        "the previous release (1.1.5) is serving again."
    )

    # A reload shows the same outcome and the same buttons.
    page.reload()
    expect(page.locator("#run-headline")).to_have_text(live)
    expect(retry).to_be_visible()
    expect(cancel).to_have_count(0)
    expect(refusal).to_be_hidden()
