"""The live progress box and the outcome (issue 19, points 1-5 and 14), at 1280 and 390 px.

The agent's side is the signed agent API, called here in the order a real run reports; the
page is a real Chromium polling the live server. Each test names the point it holds.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from django.test import Client
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from testing.agent_client import event, post_events
from testing.factories import make_run
from tests.browser.live import heartbeat, page_width
from tests.browser.pages import screenshot
from updates.models import RunStatus, UpdateEvent, UpdateRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("update_defaults")]

SYSTEM = "/admin/updates/system/"

# What the agent really says when a ClickHouse migration fails inside `migrate_all`
# (host_agent.shell.run_command around opentrace.clickhouse.migrator's message).
MIGRATE_FAILURE = (
    "python manage.py migrate_all exited with 1: Operations to perform:\n"
    "  Apply all migrations: updates\n"
    "CommandError: ClickHouse migration 0003_funnels failed at statement 1 of 2 (line 4): "
    "Code: 47. Unknown identifier 'steps' — recorded as failed; fix the cause, then "
    "`manage.py clickhouse_migrate resume 0003_funnels`"
)
ROLLBACK_DONE = (
    "checked out 1a2b3c4d5e6f; database restored from 20261201T190100Z-1.1.5; "
    "web and worker restarted; /healthz is ok and reports 1.1.5"
)

# Every state the progress box shows, recorded in the page itself (and kept across the
# page's own reload at the end in sessionStorage).
WATCH = """() => {
  const seen = JSON.parse(sessionStorage.getItem("__seen") || "[]");
  const record = () => {
    const box = document.getElementById("run-progress");
    if (!box) { return; }
    seen.push({
      status: document.getElementById("run-status").textContent,
      steps: Array.from(box.querySelectorAll("#run-steps tr"), (row) => row.cells[0].textContent),
    });
    sessionStorage.setItem("__seen", JSON.stringify(seen));
  };
  record();
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def watch(page) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(WATCH)


def seen(page) -> list[dict]:  # type: ignore[no-untyped-def]
    # The page reloads itself once the run ends; read the record once that navigation is over.
    for _ in range(20):
        page.wait_for_load_state("load")
        try:
            return page.evaluate('JSON.parse(sessionStorage.getItem("__seen") || "[]")')
        except PlaywrightError as error:
            if "context was destroyed" not in str(error):
                raise
    raise AssertionError("the page kept navigating")


def open_system(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(page.base + SYSTEM)
    expect(page.locator("#running-version")).to_be_visible()


def test_point_1_a_claimed_run_shows_running_at_once(admin_page, offered):
    page = admin_page
    run = make_run()
    heartbeat()
    open_system(page)
    expect(page.locator("#run-status")).to_have_text("Requested")
    expect(page.get_by_role("button", name="Cancel this update")).to_be_visible()

    # The agent claimed the trigger and says so in its heartbeat; its step reports are still
    # in its outbox (the backend is busy, or the update is fast).
    heartbeat(busy=True, run_id=run.pk)
    expect(page.locator("#run-status")).to_have_text("Running")
    expect(page.get_by_role("button", name="Cancel this update")).to_have_count(0)
    expect(page.locator("#run-headline")).to_have_text("Updating 1.1.5 → 1.2.0…")


def test_point_2_progress_never_goes_backwards_when_the_record_is_restored(admin_page, offered):
    page = admin_page
    run = make_run()
    heartbeat(busy=True, run_id=run.pk)
    agent = Client()
    post_events(
        agent,
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="preflight", state="started"),
        event(3, "step", step="preflight", state="succeeded", message="clean tree"),
        event(4, "step", step="backup", state="started"),
        event(5, "step", step="backup", state="succeeded", message="backup set x"),
        event(6, "step", step="fetch", state="started"),
    )
    open_system(page)
    watch(page)
    expect(page.locator("#run-steps tr")).to_have_count(3)

    # The rollback restores the database from the backup taken before the run was recorded
    # as running: the run is "requested" again with no steps, until the agent replays.
    UpdateEvent.objects.filter(run=run).delete()
    UpdateRun.objects.filter(pk=run.pk).update(status=RunStatus.REQUESTED, started_at=None)
    heartbeat()
    expect(page.locator("#run-connection")).to_contain_text("catching up", timeout=10_000)
    post_events(
        agent,
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="preflight", state="started"),
    )
    page.wait_for_timeout(2_500)  # a poll or two with the record behind the page
    post_events(
        agent,
        run.pk,
        event(3, "step", step="preflight", state="succeeded", message="clean tree"),
        event(4, "step", step="backup", state="succeeded"),
        event(5, "step", step="fetch", state="failed", message="no tag"),
        event(6, "run", state="failed", message="fetch failed: no tag"),
    )
    expect(page.locator("#run-status")).to_have_text("Failed")

    statuses = [s["status"] for s in seen(page)]
    ranks = {"Requested": 0, "Running": 1, "Failed": 2}
    assert all(ranks[a] <= ranks[b] for a, b in pairwise(statuses)), statuses
    rows = [len(s["steps"]) for s in seen(page)]
    assert all(a <= b for a, b in pairwise(rows)), rows


def test_point_3_the_page_shows_the_install_as_it_is_once_the_run_ends(admin_page, offered, settings):
    page = admin_page
    run = make_run()
    heartbeat(busy=True, run_id=run.pk)
    agent = Client()
    post_events(
        agent, run.pk, event(1, "run", state="running"), event(2, "step", step="deploy", state="started")
    )
    open_system(page)
    page.evaluate("window.__same_document = true")
    expect(page.locator("#run-status")).to_have_text("Running")
    expect(page.locator("#install-refusal")).to_have_text(
        "The update to 1.2.0 is in progress below; wait for it to end."
    )

    # The new release serves now (the live server reads this setting on every request).
    settings.OPENTRACE_VERSION = "1.2.0"
    heartbeat()
    post_events(
        agent,
        run.pk,
        event(3, "step", step="deploy", state="succeeded"),
        event(4, "run", state="succeeded", message="1.2.0 is running and healthy"),
    )
    expect(page.locator("#run-status")).to_have_text("Succeeded")
    # The whole page was loaded again: versions, offer and buttons are today's.
    page.wait_for_function("window.__same_document === undefined")
    expect(page.locator("#running-version")).to_have_text("1.2.0")
    expect(page.locator("#latest-release")).to_contain_text("Up to date")
    expect(page.get_by_role("button", name="Skip this version")).to_have_count(0)
    expect(page.locator("#release-notes")).to_have_count(0)
    expect(page.locator("#agent-status")).not_to_contain_text("busy")
    expect(page.locator(".messagelist")).to_have_count(0)
    expect(page.locator("#run-headline")).to_have_text("Now on 1.2.0 — the update from 1.1.5 succeeded.")
    assert "reload this page" not in page.content()


def rolled_back_at_migrate(run: UpdateRun) -> None:
    post_events(
        Client(),
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="deploy", state="started"),
        event(3, "step", step="deploy", state="succeeded"),
        event(4, "step", step="migrate", state="started"),
        event(5, "step", step="migrate", state="failed", message=MIGRATE_FAILURE),
        event(6, "step", step="rollback", state="started", message=MIGRATE_FAILURE),
        event(7, "step", step="rollback", state="succeeded", message=ROLLBACK_DONE),
        event(8, "run", state="rolled_back", message=f"migrate failed: {MIGRATE_FAILURE}"),
    )


def test_point_4_a_release_that_just_failed_here_is_not_offered_as_if_nothing_happened(
    admin_page,
    offered,
):
    page = admin_page
    heartbeat()
    rolled_back_at_migrate(make_run())
    open_system(page)
    warning = page.locator("#previous-failure")
    expect(warning).to_contain_text("1.2.0 failed on this install")
    expect(warning).to_contain_text("rolled back at migrate")
    expect(page.get_by_role("button", name="Install update 1.2.0…")).to_have_count(0)
    retry = page.get_by_role("button", name="Try 1.2.0 again…")
    expect(retry).to_be_visible()
    assert "default" not in (retry.get_attribute("class") or "")


def test_point_5_the_outcome_is_one_sentence_with_the_detail_collapsed(admin_page, offered, width, artifacts):
    page = admin_page
    heartbeat()
    rolled_back_at_migrate(make_run())
    open_system(page)
    headline = page.locator("#run-headline")
    expect(headline).to_have_text(
        "Still on 1.1.5 — 1.2.0 failed at migrate: python manage.py migrate_all exited with 1: "
        "CommandError: ClickHouse migration 0003_funnels failed at statement 1 of 2 (line 4): "
        "Code: 47. Unknown identifier 'steps'; the database was restored from the backup taken "
        "before the update, and 1.1.5 is serving again."
    )
    text = headline.inner_text()
    assert text.count("migrate ") + text.count("migrate:") == 1, text  # the step, said once
    if width == 1280:
        screenshot(page, artifacts, "system-updates-outcome-rolled-back")
    detail = page.locator("#run-detail")
    expect(detail.locator("pre")).to_be_hidden()  # collapsed until asked for
    detail.locator("summary").click()
    expect(detail.locator("pre")).to_contain_text("Apply all migrations")
    # The rollback restored the database: resuming the migration would re-apply it.
    assert "clickhouse_migrate resume" not in page.locator("#run-banner").inner_text()


def test_point_5_the_runs_page_in_update_history_reads_the_same_way(admin_page):
    page = admin_page
    run = make_run()
    rolled_back_at_migrate(run)
    page.goto(page.base + f"/admin/updates/updaterun/{run.pk}/change/")
    expect(page.locator(".field-run_status .ot-badge")).to_have_text("Rolled back")
    headline = page.locator("#run-headline")
    expect(headline).to_have_text(UpdateRun.objects.get(pk=run.pk).outcome)
    expect(headline).to_contain_text("Still on 1.1.5 — 1.2.0 failed at migrate: ")
    detail = page.locator("#run-detail pre")
    expect(detail).to_be_hidden()
    page.locator("#run-detail summary").click()
    expect(detail).to_contain_text("Apply all migrations")

    # One line per step; the migration's full text is folded under it.
    migrate = page.locator("#run-timeline tbody tr").filter(has_text="migrate").first
    message = migrate.locator("td.ot-message")
    expect(message).to_contain_text("Unknown identifier 'steps'")
    expect(message.locator("pre")).to_be_hidden()
    assert "Operations to perform" not in message.inner_text()
    message.locator("summary").click()
    expect(message.locator("pre")).to_contain_text("Apply all migrations")
    # The rollback removed the migration: advice to resume it would re-apply it.
    assert "clickhouse_migrate resume" not in page.locator("#content-main").inner_text()


def test_point_14_the_page_fits_a_phone(admin_page, offered, width, artifacts):
    page = admin_page
    heartbeat()
    rolled_back_at_migrate(make_run())
    open_system(page)
    page.locator("#recent-checks summary").click()
    assert page_width(page) <= width, f"the page is {page_width(page)} px wide at {width} px"
    if width == 390:
        screenshot(page, artifacts, "system-updates-mobile")
