"""Settings → Update policy, and a scheduled install shown, rescheduled and cancelled on System
updates (issue 20), at 1280 and 390 px, on Django's live server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.live import heartbeat, page_width
from tests.browser.pages import screenshot
from updates.models import ScheduledInstall, UpdatePolicy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("update_defaults")]

SYSTEM = "/admin/updates/system/"


def test_an_admin_sets_the_update_policy(admin_page, width, artifacts):
    page = admin_page
    page.goto(page.base + "/admin/")
    page.locator("#content-main .app-settings").get_by_role("link", name="Update policy", exact=True).click()
    expect(page.locator("h1")).to_have_text("Update policy")

    page.get_by_label("Automatic for security releases (severity security or critical)").check()
    for day in ("Monday", "Tuesday", "Thursday", "Friday", "Saturday"):
        page.get_by_label(day).uncheck()
    page.get_by_label("Window opens at").fill("04:30")
    page.get_by_label("Window length (minutes)").fill("90")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".messagelist .success")).to_have_text("The update policy was saved.")
    expect(page.locator("#policy-window-state")).to_contain_text(
        "Maintenance window: Wednesday, Sunday at 04:30 for 1 h 30 min (Europe/Berlin)"
    )
    expect(page.locator("#policy-window-state")).to_contain_text(
        re.compile(r"Next openings: (Wednesday|Sunday) ")
    )
    policy = UpdatePolicy.load()
    assert (policy.mode, sorted(policy.window_days), policy.time_zone) == (
        "security",
        [2, 6],
        "Europe/Berlin",
    )
    assert page_width(page) <= width
    screenshot(page, artifacts, f"update-policy-{width}")

    # A policy that cannot work is refused with the reason, next to the field.
    page.get_by_label("Wednesday").uncheck()
    page.get_by_label("Sunday").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".errorlist")).to_contain_text("Automatic installs need a maintenance window")
    assert sorted(UpdatePolicy.load().window_days) == [2, 6]


def test_a_scheduled_install_is_shown_rescheduled_and_cancelled(admin_page, offered, width, artifacts):
    page = admin_page
    heartbeat()
    page.goto(page.base + SYSTEM)
    page.get_by_role("button", name="Install update 1.2.0…").click()
    expect(page.locator("#confirm-estimate")).to_contain_text("first update")
    page.locator("#confirm-schedule").click()

    box = page.locator("#scheduled-install")
    expect(page.locator(".messagelist .success")).to_contain_text("1.2.0 will be installed on")
    expect(box.locator("#scheduled-status")).to_have_text("Scheduled")
    expect(box.locator("#scheduled-path")).to_have_text("1.2.0")
    first_when = box.locator("#scheduled-when").inner_text()
    assert page_width(page) <= width
    screenshot(page, artifacts, f"scheduled-install-{width}")

    # Moved to the window after the next one.
    options = box.locator("#reschedule-to option")
    later_label = options.nth(1).inner_text()
    box.locator("#reschedule-to").select_option(index=1)
    box.get_by_role("button", name="Reschedule").click()
    expect(page.locator(".messagelist .success")).to_have_text(
        f"The install of 1.2.0 was moved to {later_label}."
    )
    expect(page.locator("#scheduled-when")).to_contain_text(later_label)
    assert later_label not in first_when
    scheduled = ScheduledInstall.objects.get()
    assert scheduled.status == "scheduled"

    # Cancelled: gone from the page, and said so.
    page.get_by_role("button", name="Cancel the scheduled install").click()
    expect(page.locator(".messagelist .success")).to_have_text(
        "The scheduled install of 1.2.0 was cancelled."
    )
    expect(page.locator("#scheduled-install")).to_have_count(0)
    expect(page.locator("#scheduled-ended")).to_contain_text("cancelled. Cancelled by root_admin.")
    scheduled.refresh_from_db()
    assert scheduled.status == "cancelled"
