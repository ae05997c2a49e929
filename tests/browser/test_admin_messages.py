"""What the admin reads: check errors, the agent, history, release notes, the banner, the frame
(issue 19, points 6-11), at 1280 and 390 px, on Django's live server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from contract.registry import RegistryError
from testing.agent_client import event, post_events
from testing.factories import make_run
from testing.helpers import closed_port
from testing.registry_server import full_document
from tests.browser.live import heartbeat, open_as
from tests.browser.pages import screenshot
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState, UpdateEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("update_defaults")]

SYSTEM = "/admin/updates/system/"
SEP = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "  # the admin's breadcrumb separator
# The text requests and urllib3 give for a registry host that does not resolve, as stored.
UNRESOLVABLE = (
    "could not reach the registry: HTTPSConnectionPool(host='version.429toomanyre.quest', port=443): "
    'Max retries exceeded with url: /version.json (Caused by NameResolutionError("<urllib3.connection.'
    "HTTPSConnection object at 0x7f3a>: Failed to resolve 'version.429toomanyre.quest' ([Errno -2] Name "
    'or service not known)"))'
)


def test_point_6_a_check_that_cannot_reach_the_registry_is_one_sentence(admin_page, settings):
    page = admin_page
    settings.OPENTRACE_REGISTRY_URL = f"http://127.0.0.1:{closed_port()}/version.json"
    page.goto(page.base + SYSTEM)
    # Before any check the page still says which registry it asks, and that it has not yet.
    expect(page.locator("#registry-url")).to_have_text(settings.OPENTRACE_REGISTRY_URL)
    expect(page.locator("#registry-status")).to_contain_text("No successful check yet")

    page.get_by_role("button", name="Check now").click()
    flash = page.locator(".messagelist .error")
    expect(flash).to_have_text("The update check failed: The registry's server refused the connection.")
    expect(page.locator("#last-check-summary")).to_have_text("The registry's server refused the connection.")
    raw = page.locator("#last-check details pre")
    expect(raw).to_be_hidden()  # the library's words are there, one click away
    expect(raw).to_contain_text("Connection refused")
    assert "HTTPConnectionPool" not in page.locator("body").inner_text()

    # The stored text of a DNS failure reads the same way; Recent checks lists a few, folded.
    RegistryState.record_failure(
        trigger=RegistryCheck.Trigger.SCHEDULED,
        url="https://version.429toomanyre.quest/version.json",
        started_at=timezone.now(),
        error=RegistryError(UNRESOLVABLE, permanent=False),
    )
    for _ in range(8):
        run_check(RegistryCheck.Trigger.SCHEDULED)
    page.goto(page.base + SYSTEM)
    expect(page.locator("#recent-checks table")).to_be_hidden()
    page.locator("#recent-checks summary").click()
    expect(page.locator("#recent-checks tbody tr")).to_have_count(5)
    assert "NameResolutionError" not in page.locator("body").inner_text()


def test_point_7_the_page_notices_the_agents_first_heartbeat_by_itself(admin_page):
    page = admin_page
    page.goto(page.base + SYSTEM)
    status = page.locator("#agent-status")
    expect(status).to_contain_text("offline")
    expect(status).to_contain_text("no heartbeat received yet")
    heartbeat()  # the agent started a moment after the web server
    expect(status).to_contain_text("online", timeout=10_000)


def test_point_8_history_reads_like_the_rest_of_the_admin(admin_page):
    page = admin_page
    run = make_run()
    post_events(
        Client(),
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="preflight", state="started"),
        event(3, "step", step="preflight", state="succeeded", message="clean tree"),
        event(4, "run", state="succeeded"),
    )
    # A 0.94 s run and a 47 ms step, as the agent's clock had them.
    started = timezone.now() - timedelta(seconds=2)
    UpdateEvent.objects.filter(run=run, seq=2).update(at=started)
    UpdateEvent.objects.filter(run=run, seq=3).update(at=started + timedelta(milliseconds=47))
    type(run).objects.filter(pk=run.pk).update(
        started_at=started, finished_at=started + timedelta(milliseconds=940)
    )

    page.goto(page.base + "/admin/updates/updaterun/")
    row = page.locator("#result_list tbody tr").first
    expect(row).to_contain_text("UTC")
    expect(row.locator(".ot-badge.succeeded")).to_have_text("Succeeded")
    expect(row).to_contain_text("0.9 s")
    expect(page.locator(".paginator")).to_contain_text("1 update")

    row.get_by_role("link").first.click()
    body = page.locator("#content-main")
    expect(body).not_to_contain_text("Requested by username")
    expect(body).not_to_contain_text("Manifest verified")
    expect(page.locator(".field-manifest_display")).to_contain_text("unverified")
    expect(page.locator("#run-timeline")).to_contain_text("0.0 s")
    assert "0:00:00" not in body.inner_text()


NOTES = (
    "## What's new\n\n**Faster funnels** with `GROUP BY` pushed down.\n\n"
    "- [changelog](https://opentrace.example.com/releases/1.2.0)\n"
    "- [y](javascript:alert`1`) and [x](http://downgrade.example.com/)\n\n"
    "<script>document.title='pwned'</script> <img src=x onerror=\"document.title='pwned'\">\n\n"
    "![tracker](https://tracker.example.com/pixel.png)"
)


def test_point_9_release_notes_are_markdown_and_inert(admin_page, registry_server):
    page = admin_page
    dialogs: list[object] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog), dialog.dismiss()))
    registry_server.serve_json("/version.json", full_document({"version": "1.2.0", "notes": NOTES}))
    run_check(RegistryCheck.Trigger.SCHEDULED)
    page.goto(page.base + SYSTEM)
    notes = page.locator("#release-notes")
    expect(notes.locator("h2")).to_have_text("What's new")
    expect(notes.locator("strong")).to_have_text("Faster funnels")
    expect(notes.locator("code").first).to_have_text("GROUP BY")
    links = notes.get_by_role("link")
    hrefs = [link.get_attribute("href") for link in links.all()]
    assert hrefs == [
        "https://opentrace.example.com/releases/1.2.0",
        "https://tracker.example.com/pixel.png",  # an image is a link to it, never loaded
    ]
    for link in links.all():
        assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    expect(notes).to_contain_text("<script>document.title='pwned'</script>")
    assert notes.locator("img, script").count() == 0
    expect(page).not_to_have_title("pwned")
    assert dialogs == []


def test_point_10_an_available_update_is_announced_across_the_admin(
    browser,
    live_server,
    staff_user,
    width,
    registry_server,
    artifacts,
):
    registry_server.serve_json(
        "/version.json", full_document({"version": "1.2.0", "severity": "normal"}, meta_version=1)
    )
    run_check(RegistryCheck.Trigger.SCHEDULED)
    page = open_as(browser, live_server, staff_user, width)
    try:
        page.goto(live_server.url + "/admin/")
        banner = page.locator("#update-banner")
        expect(banner).to_contain_text("OpenTrace 1.2.0 is available (this install runs 1.1.5)")
        expect(banner).not_to_have_class("ot-site-banner strong")
        page.goto(live_server.url + "/admin/password_change/")
        expect(page.locator("#update-banner")).to_be_visible()  # every admin page

        registry_server.serve_json(
            "/version.json", full_document({"version": "1.2.1", "severity": "security"}, meta_version=2)
        )
        run_check(RegistryCheck.Trigger.SCHEDULED)
        page.goto(live_server.url + "/admin/")
        expect(banner).to_contain_text("Security update: OpenTrace 1.2.1 is available")
        expect(banner).to_have_class("ot-site-banner strong")
        if width == 1280:
            screenshot(page, artifacts, "admin-index-security-banner")
        banner.get_by_role("link").click()
        expect(page.locator("#latest-release")).to_contain_text("1.2.1")
        expect(page.locator("#update-banner")).to_have_count(0)  # the page says it in full
    finally:
        page.context.close()


def test_point_11_one_name_one_frame_everywhere(admin_page):
    page = admin_page
    make_run()
    page.goto(page.base + "/admin/")
    expect(page.get_by_role("link", name="View site")).to_have_count(0)
    page.goto(page.base + "/admin/updates/updaterun/")
    expect(page.locator(".breadcrumbs")).to_have_text(SEP.join(["Home", "Settings", "Update history"]))
    expect(page.locator(".paginator")).to_contain_text("1 update")
    page.goto(page.base + "/admin/smtpconfig/smtpsettings/")
    expect(page.locator(".breadcrumbs")).to_have_text(SEP.join(["Home", "Settings", "SMTP configuration"]))
    page.goto(page.base + "/admin/smtpconfig/noticelog/")
    expect(page.locator(".breadcrumbs")).to_have_text(SEP.join(["Home", "Settings", "Notice log"]))
    expect(page.locator(".paginator")).to_contain_text("0 notices")

    page.get_by_role("button", name="Log out").click()
    page.goto(page.base + "/admin/password_reset/")
    expect(page).to_have_title("Password reset | OpenTrace admin")
    expect(page.locator("#site-name")).to_have_text("OpenTrace administration")
    assert "Django" not in page.locator("body").inner_text()
