"""Settings → Notification channels in a browser: add a webhook, copy its secret from the one
page that shows it, send a test to a receiver on 127.0.0.1, and find it in the notice log."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from testing.e2e import ADMIN_PASSWORD
from testing.webhook_receiver import Receiver, start_receiver, stop_receiver
from tests.browser.pages import log_in, open_settings_page
from tests.browser.site import ADMIN_USER, BrowserSite
from updates.channels import webhook


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = start_receiver()
    yield receiver
    stop_receiver(receiver)


def test_an_admin_adds_a_webhook_sends_a_test_and_sees_it_in_the_notice_log(
    page: Page, site: BrowserSite, hook: Receiver
):
    url = hook.url("/hooks/browser-path-token")
    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)
    open_settings_page(page, site, "Notification channels")
    page.get_by_role("link", name=re.compile("Add notification channel")).click()

    page.get_by_label("Name").fill("Browser hook")
    page.get_by_label("Kind").select_option("webhook")
    page.get_by_label("URL").fill(url)
    page.get_by_role("button", name="Save", exact=True).click()

    # The one page that shows the secret.
    expect(page.locator(".messagelist .success")).to_contain_text("“Browser hook” was saved")
    secret = page.locator("#webhook-secret").input_value()
    assert len(secret) >= 40
    page.locator("#continue").click()

    expect(page.get_by_label("URL")).to_have_value("")  # write-only
    assert secret not in page.content()
    assert "browser-path-token" not in page.content()
    page.get_by_role("button", name="Send test").click()

    expect(page.locator(".messagelist .success")).to_have_text(
        f"Test notice sent to “Browser hook”: http://127.0.0.1:{hook.port} answered 200."
    )
    [request] = hook.received
    assert request.path == "/hooks/browser-path-token"
    assert request.json()["event"] == "test"
    stamp = request.headers["X-OpenTrace-Timestamp"]
    assert request.headers["X-OpenTrace-Signature"] == webhook.signature(secret, stamp, request.body)

    open_settings_page(page, site, "Notice log")
    row = page.locator("#result_list tbody tr").filter(has_text="Browser hook").first
    expect(row).to_contain_text("test")
    expect(row).to_contain_text("Sent")
    assert secret not in page.content()
