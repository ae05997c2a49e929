"""Settings → SMTP configuration in Chromium (issue 19, point 12), at 1280 and 390 px."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from testing.helpers import closed_port, wait_for
from testing.smtp import SmtpTestServer
from tests.browser.pages import screenshot

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/admin/smtpconfig/smtpsettings/"
USER, PASSWORD = "mailer", "smtp-Pa55-browser!"


def fill_server(page, port: int) -> None:  # type: ignore[no-untyped-def]
    page.locator("#id_host").fill("127.0.0.1")
    page.locator("#id_port").fill(str(port))
    page.locator("#id_security").select_option("none")
    page.locator("#id_timeout").fill("5")
    page.locator("#id_username").fill(USER)
    page.locator("#id_password").fill(PASSWORD)


def test_point_12_the_smtp_page_tests_what_is_typed_and_warns_about_what_cannot_work(
    admin_page, width, artifacts, smtp_server: Callable[..., SmtpTestServer]
):
    from smtpconfig.models import SmtpSettings

    page = admin_page
    mailbox = smtp_server("none", users={USER: PASSWORD})
    page.goto(page.base + PAGE)
    # Section headings are one line tall, with their text inside; none is an empty bar.
    for heading in page.locator("#smtpsettings_form h2").all():
        box = heading.bounding_box()
        assert box is not None
        assert box["height"] < 45, (heading.inner_text(), box)
        assert heading.inner_text().strip(), "an empty heading bar"
    if width == 1280:
        screenshot(page, artifacts, "smtp-configuration")

    # Typed, not saved: the test email goes through these settings all the same.
    fill_server(page, mailbox.port)
    page.get_by_role("button", name="Send test email").click()
    result = page.locator("#test-email-result")
    expect(result).to_contain_text("Test email sent to root@example.com", timeout=20_000)
    expect(result).to_contain_text("not saved yet")
    [received] = wait_for(lambda: mailbox.received, 20, "the test email", interval=0.1)
    assert received.rcpt_tos == ["root@example.com"]
    assert SmtpSettings.load().host == ""  # nothing was saved by testing
    expect(page.locator("#id_host")).to_have_value("127.0.0.1")  # nothing typed was lost

    # Enabled with a server that refuses the connection: saved, with a warning that says so.
    page.locator("#id_port").fill(str(closed_port()))
    page.locator("#id_enabled").check()
    page.get_by_role("button", name="Save", exact=True).click()
    warning = page.locator(".messagelist .warning")
    expect(warning).to_contain_text("Saved and enabled, but the server does not accept these settings")
    expect(warning).to_contain_text("refused")
    assert SmtpSettings.load().enabled
