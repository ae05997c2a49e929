"""What a person does in the admin, as small steps the browser tests share."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.browser.site import BrowserSite


def log_in(page: Page, site: BrowserSite, username: str, password: str) -> None:
    page.goto(f"{site.url}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def open_settings_page(page: Page, site: BrowserSite, name: str) -> None:
    """From the admin index, follow the link in the "Settings" section."""
    page.goto(f"{site.url}/admin/")
    settings = page.locator("#content-main .app-settings")
    expect(settings).to_contain_text("Settings")
    settings.get_by_role("link", name=name, exact=True).click()


def check_now(page: Page, site: BrowserSite, version: str) -> None:
    """Settings → System updates → "Check now", which finds `version` offered."""
    open_settings_page(page, site, "System updates")
    page.get_by_role("button", name="Check now").click()
    expect(page.locator(".messagelist .success")).to_have_text(f"Version {version} is available.")
    expect(page.locator("#latest-release")).to_contain_text(version)


def configure_smtp(page: Page, site: BrowserSite, *, port: int, username: str, password: str) -> None:
    """Settings → SMTP configuration: point all mail at 127.0.0.1:<port>, plain SMTP with AUTH."""
    open_settings_page(page, site, "SMTP configuration")
    page.locator("#id_enabled").check()
    page.locator("#id_host").fill("127.0.0.1")
    page.locator("#id_port").fill(str(port))
    page.locator("#id_security").select_option("none")
    page.locator("#id_timeout").fill("5")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.locator("#id_from_address").fill("OpenTrace Ops <ops@opentrace.test>")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()


def screenshot(page: Page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def reload_until(page: Page, locator: Locator, text: str, timeout: float = 45) -> None:
    """Reload until `locator` shows `text`: for state the page does not poll for itself."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            expect(locator).to_contain_text(text, timeout=1_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()
