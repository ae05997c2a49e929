"""Logging in to the admin, and what a staff member without the install permission can do."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from testing.e2e import ADMIN_PASSWORD
from tests.browser.pages import log_in, open_settings_page
from tests.browser.site import ADMIN_USER, OFFERED_VERSION, VIEWER, BrowserSite


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_settings(page: Page, site: BrowserSite):
    page.goto(f"{site.url}/admin/")
    expect(page).to_have_url(f"{site.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errornote")).to_contain_text("enter the correct username and password")

    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)

    settings = page.locator("#content-main .app-settings")
    for name in ("System updates", "Update history", "SMTP configuration"):
        expect(settings.get_by_role("link", name=name, exact=True)).to_be_visible()
    open_settings_page(page, site, "System updates")
    expect(page.locator("#running-version")).to_have_text(site.running_version())


def test_a_staff_member_without_the_permission_cannot_install(page: Page, site: BrowserSite):
    log_in(page, site, VIEWER[0], VIEWER[2])
    open_settings_page(page, site, "System updates")
    page.get_by_role("button", name="Check now").click()

    # The offer is visible, the way to install it is not.
    expect(page.locator(".messagelist")).to_contain_text("is available")
    expect(page.locator("#release-notes")).to_be_visible()
    expect(page.locator("#install-section")).to_have_count(0)
    expect(page.get_by_role("button", name="Skip this version")).to_have_count(0)

    # Going to the confirmation or posting the install form directly is refused too.
    confirm = page.goto(f"{site.url}/admin/updates/system/install/?version={OFFERED_VERSION}")
    assert confirm is not None
    assert confirm.status == 403
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    posted = page.request.post(
        f"{site.url}/admin/updates/system/install/start/",
        form={"version": OFFERED_VERSION, "idempotency_key": "0" * 32, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{site.url}/admin/updates/system/"},
        max_redirects=0,
    )
    assert posted.status == 403
    page.goto(f"{site.url}/admin/updates/system/")
    expect(page.locator("#run-progress")).to_have_count(0)
