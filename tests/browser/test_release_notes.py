"""Release notes come from the registry: untrusted text that the real browser must never run."""

from __future__ import annotations

from playwright.sync_api import Dialog, Locator, Page, expect

from testing.e2e import ADMIN_PASSWORD
from tests.browser.pages import check_now, log_in
from tests.browser.site import ADMIN_USER, OFFERED_VERSION, BrowserSite

HOSTILE_VERSION = "1.2.3"
HOSTILE_NOTES = (
    "<img src=x onerror=\"document.title='pwned'\"> <script>document.title='pwned'</script>\n"
    # Well-formed markdown links, so they reach the link rule.
    "[docs](javascript:alert(1)) [old](http://downgrade.example.com/) javascript:alert(2) "
    "http://downgrade.example.com/\n"
    '<a href="javascript:alert(3)">click</a> https://opentrace.example.com/safe'
)


def assert_inert(notes: Locator) -> None:
    expect(notes).to_contain_text("javascript:alert(2)")
    expect(notes).to_contain_text("[docs](javascript:alert(1))")
    assert notes.locator("img, script, iframe").count() == 0
    hrefs = [link.get_attribute("href") for link in notes.get_by_role("link").all()]
    assert hrefs == ["https://opentrace.example.com/safe"]


def test_hostile_release_notes_are_shown_as_text_and_never_run(page: Page, site: BrowserSite):
    site.publish(HOSTILE_VERSION, HOSTILE_NOTES)
    site.offer(OFFERED_VERSION, HOSTILE_VERSION)
    dialogs: list[Dialog] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog), dialog.dismiss()))
    try:
        log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)
        check_now(page, site, HOSTILE_VERSION)

        notes = page.locator("#release-notes")
        expect(notes).to_contain_text("<img src=x onerror=")
        expect(notes).to_contain_text("<script>document.title='pwned'</script>")
        assert_inert(notes)
        expect(page).not_to_have_title("pwned")

        # The confirmation page shows them too.
        page.goto(f"{site.url}/admin/updates/system/install/?version={HOSTILE_VERSION}")
        expect(page.locator("#confirm-to")).to_have_text(HOSTILE_VERSION)
        assert_inert(page.locator(".module").filter(has_text="Release notes"))
        expect(page).not_to_have_title("pwned")
        assert dialogs == []
    finally:
        site.offer(OFFERED_VERSION)  # the other tests expect the ordinary offer
