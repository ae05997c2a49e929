"""SMTP settings in the admin, the test email, and password reset from the login page."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from testing.e2e import ADMIN_PASSWORD
from testing.helpers import closed_port, wait_for
from testing.smtp import SmtpTestServer
from tests.browser.pages import configure_smtp, log_in
from tests.browser.site import ADMIN_EMAIL, ADMIN_USER, FORGETFUL, BrowserSite

SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-Pa55-browser!"


def test_an_admin_configures_smtp_and_the_test_email_arrives(
    page: Page, site: BrowserSite, smtp_server: Callable[..., SmtpTestServer]
):
    mailbox = smtp_server("none", users={SMTP_USER: SMTP_PASSWORD})
    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)

    configure_smtp(page, site, port=mailbox.port, username=SMTP_USER, password=SMTP_PASSWORD)

    expect(page.locator("#active-transport")).to_contain_text(f"127.0.0.1:{mailbox.port}")
    assert SMTP_PASSWORD not in page.content()  # write-only: never rendered back
    test_form = page.locator("#test-email")
    expect(test_form.get_by_label("Send a test email to")).to_have_value(ADMIN_EMAIL)
    test_form.get_by_role("button", name="Send test email").click()

    expect(page.locator("#test-email-result")).to_contain_text(f"Test email sent to {ADMIN_EMAIL}")
    [received] = wait_for(lambda: mailbox.received, 20, "the test email", interval=0.1)
    assert received.rcpt_tos == [ADMIN_EMAIL]
    assert received.mail_from == "ops@opentrace.test"


def test_a_server_that_refuses_the_connection_is_reported_by_name(page: Page, site: BrowserSite):
    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)
    configure_smtp(page, site, port=closed_port(), username=SMTP_USER, password=SMTP_PASSWORD)

    page.locator("#test-email").get_by_role("button", name="Send test email").click()

    error = page.locator("#test-email-result")
    expect(error).to_contain_text(f"Test email to {ADMIN_EMAIL} failed")
    expect(error).to_contain_text("refused")
    assert SMTP_PASSWORD not in page.content()


def test_a_forgotten_password_is_reset_from_the_login_page(
    page: Page, site: BrowserSite, smtp_server: Callable[..., SmtpTestServer]
):
    mailbox = smtp_server("none", users={SMTP_USER: SMTP_PASSWORD})
    log_in(page, site, ADMIN_USER, ADMIN_PASSWORD)
    configure_smtp(page, site, port=mailbox.port, username=SMTP_USER, password=SMTP_PASSWORD)
    page.get_by_role("button", name="Log out").click()

    page.goto(f"{site.url}/admin/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.locator("#id_email").fill(FORGETFUL[1])
    page.get_by_role("button", name="Reset my password").click()
    expect(page).to_have_url(f"{site.url}/admin/password_reset/done/")

    [received] = wait_for(lambda: mailbox.received, 20, "the password reset mail", interval=0.1)
    assert received.rcpt_tos == [FORGETFUL[1]]
    link = re.search(r"http://\S+/admin/reset/\S+/", received.text)
    assert link, received.text
    assert link.group(0).startswith(site.url)

    page.goto(link.group(0))
    page.locator("#id_new_password1").fill("a-much-better-passphrase-42")
    page.locator("#id_new_password2").fill("a-much-better-passphrase-42")
    page.get_by_role("button", name="Change my password").click()
    expect(page).to_have_url(f"{site.url}/admin/reset/done/")

    page.get_by_role("link", name="Log in").click()
    log_in(page, site, FORGETFUL[0], "a-much-better-passphrase-42")
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{site.url}/admin/login/")
    page.get_by_label("Username").fill(FORGETFUL[0])
    page.get_by_label("Password").fill(FORGETFUL[2])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errornote")).to_be_visible()
