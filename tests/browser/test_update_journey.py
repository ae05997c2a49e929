"""The admin's update journey on a real install: offer, confirm, live progress through the
restart, the outcome, and the run in Update history; then a release that never becomes healthy.

The screenshots of the System updates page taken here are the ones in docs/images/. To refresh
them: `OPENTRACE_BROWSER_ARTIFACTS=/tmp/shots .venv/bin/python -m pytest tests/browser`, then
`pngquant --quality=70-90 --strip --force --output docs/images/<name>.png /tmp/shots/<name>.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import BROKEN_VERSION, OFFERED_VERSION
from tests.browser.pages import check_now, log_in, open_settings_page, reload_until, screenshot
from tests.browser.site import ADMIN_USER, BrowserSite
from tests.e2e.conftest import ADMIN_PASSWORD

STEPS = ["preflight", "backup", "fetch", "build", "deploy", "migrate", "healthcheck"]
# An update of the real app on a loaded 2-core machine takes about half a minute.
UPDATE_TIMEOUT_MS = 150_000


def step_states(page: Page) -> list[tuple[str, str]]:
    rows = page.locator("#run-steps tr").all()
    return [(row.locator("td").nth(0).inner_text(), row.locator("td").nth(1).inner_text()) for row in rows]


def check_now_and_see_the_offer(page: Page, site: BrowserSite, version: str) -> None:
    check_now(page, site, version)
    # The agent's first heartbeat may land just after the page was rendered.
    reload_until(page, page.locator("#agent-status .ot-badge"), "online")


def confirm_install(page: Page, running: str, version: str) -> None:
    page.get_by_role("button", name=f"Install update {version}…").click()
    expect(page.locator("#confirm-from")).to_have_text(running)
    expect(page.locator("#confirm-to")).to_have_text(version)
    expect(page.locator("#confirm-agent")).to_contain_text("online")
    page.get_by_role("button", name=f"Yes, install {version}").click()
    expect(page.locator(".messagelist .success")).to_contain_text(f"The update to {version} was requested")
    page.evaluate(WATCH_PROGRESS)


# Records every state of the progress box the page shows, in this very document: if the page
# reloaded (or the polling script gave up during the restart) the record would be gone or stop.
WATCH_PROGRESS = """() => {
  const box = document.getElementById("run-progress");
  window.__seen = [];
  const record = () => window.__seen.push({
    status: document.getElementById("run-status").textContent,
    steps: Array.from(
      box.querySelectorAll("#run-steps tr"), (row) => [row.cells[0].textContent, row.cells[1].textContent]
    ),
    connection: document.getElementById("run-connection").textContent,
  });
  record();
  new MutationObserver(record).observe(box, {subtree: true, childList: true, characterData: true});
}"""


def seen_progress(page: Page) -> list[dict]:
    return page.evaluate("window.__seen")


def distinct(values: list) -> list:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def test_an_admin_installs_the_update_and_watches_it_through_the_restart(
    page: Page, site: BrowserSite, artifacts: Path
):
    running = site.running_version()
    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)
    check_now_and_see_the_offer(page, site, OFFERED_VERSION)
    notes = page.locator("#release-notes")
    expect(notes).to_contain_text("Faster funnels.")
    expect(notes.get_by_role("link")).to_have_attribute(
        "href", "https://opentrace.example.com/releases/1.2.0"
    )
    screenshot(page, artifacts, "system-updates-available")

    confirm_install(page, running, OFFERED_VERSION)

    status = page.locator("#run-status")
    expect(status).to_have_text("Running", timeout=UPDATE_TIMEOUT_MS)
    expect(page.locator("#run-steps")).to_contain_text("fetch", timeout=UPDATE_TIMEOUT_MS)
    screenshot(page, artifacts, "system-updates-in-progress")
    expect(status).to_have_text("Succeeded", timeout=UPDATE_TIMEOUT_MS)
    expect(page.locator("#run-outcome")).to_have_text(f"OpenTrace {OFFERED_VERSION} is installed.")
    expect(page.locator("#run-connection")).to_have_text("Finished.")
    assert step_states(page) == [(step, "succeeded") for step in STEPS]
    assert site.running_version() == OFFERED_VERSION

    # The same page showed the run move forward, step by step, through the web restart.
    seen = seen_progress(page)
    (artifacts / "progress-seen.json").write_text(json.dumps(seen, indent=1))
    assert distinct([s["status"] for s in seen])[-2:] == ["Running", "Succeeded"]
    shown = distinct([s["steps"] for s in seen])
    assert all([name for name, _ in steps] == STEPS[: len(steps)] for steps in shown), shown
    assert len(shown) >= 3, f"the page saw too few intermediate states: {shown}"

    page.reload()
    expect(page.locator("#running-version")).to_have_text(OFFERED_VERSION)
    expect(page.locator("#latest-release")).to_contain_text("Up to date")
    screenshot(page, artifacts, "system-updates-succeeded")

    open_settings_page(page, site, "Update history")
    row = page.locator("#result_list tbody tr").filter(has_text=f"{running} → {OFFERED_VERSION}")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text(ADMIN_USER)
    row.get_by_role("link").first.click()
    expect(page.locator("#run-timeline")).to_contain_text("healthcheck")
    expect(page.locator(".field-status")).to_contain_text("Succeeded")
    expect(page.locator("#run-log")).not_to_have_text("No log lines reported.")


def test_a_release_that_never_becomes_healthy_is_rolled_back(page: Page, site: BrowserSite, artifacts: Path):
    running = site.running_version()
    site.offer(OFFERED_VERSION, BROKEN_VERSION)
    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)
    check_now_and_see_the_offer(page, site, BROKEN_VERSION)

    confirm_install(page, running, BROKEN_VERSION)

    status = page.locator("#run-status")
    expect(status).to_have_text("Rolled back", timeout=UPDATE_TIMEOUT_MS)
    expect(page.locator("#run-outcome")).to_contain_text("Failed at step healthcheck.")
    states = dict(step_states(page))
    assert states["healthcheck"] == "failed"
    assert states["rollback"] == "succeeded"
    assert distinct([s["status"] for s in seen_progress(page)])[-2:] == ["Running", "Rolled back"]
    assert site.running_version() == running

    page.reload()
    expect(page.locator("#running-version")).to_have_text(running)
    expect(page.locator("#run-status")).to_have_text("Rolled back")
    expect(page.locator("#run-outcome")).to_contain_text("Failed at step healthcheck.")
    # Still offered: an admin may retry once the release is fixed, or skip it.
    expect(page.locator("#latest-release")).to_contain_text(BROKEN_VERSION)
    expect(page.get_by_role("button", name="Skip this version")).to_be_visible()
    screenshot(page, artifacts, "system-updates-rolled-back")
