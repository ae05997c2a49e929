"""The "System updates" admin page, read side: who sees it, what it says, Check now, Skip."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from testing.registry_server import envelope, full_document, respond
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState

pytestmark = pytest.mark.django_db

PAGE = "/admin/updates/system/"


def serve_and_check(server, document) -> None:
    server.serve_json("/version.json", document)
    run_check(RegistryCheck.Trigger.SCHEDULED)


def test_the_page_lives_at_its_url_and_is_listed_under_settings(client, superuser):
    assert reverse("updates_system") == PAGE
    client.force_login(superuser)
    index = client.get("/admin/")
    assert b"System updates" in index.content
    assert PAGE.encode() in index.content


def test_anonymous_is_sent_to_the_login_page(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_non_staff_user_is_sent_to_the_login_page(client, plain_user):
    client.force_login(plain_user)
    assert client.get(PAGE).status_code == 302


def test_staff_without_permission_sees_the_page_but_no_skip_button(client, staff_user, registry_server):
    serve_and_check(registry_server, {"version": "1.2.0"})
    client.force_login(staff_user)
    response = client.get(PAGE)
    assert response.status_code == 200
    assert b"1.2.0" in response.content
    assert b"Skip this version" not in response.content


def test_it_shows_running_and_latest_version_severity_and_unverified(client, superuser, registry_server):
    serve_and_check(
        registry_server, full_document({"version": "1.2.0", "severity": "critical", "notes": "Big"})
    )
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert "1.1.5" in page
    assert "1.2.0" in page
    assert "critical" in page
    assert "unverified" in page
    assert "Big" in page


def test_it_says_verified_when_a_pinned_key_signed(client, superuser, registry_server, signing_key):
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    registry_server.serve("/version.json", respond(envelope(inner, signing_key)))
    run_check(RegistryCheck.Trigger.SCHEDULED)
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert "verified</span> signed by a pinned key" in page


def test_it_says_up_to_date_only_when_current(client, superuser, registry_server):
    serve_and_check(registry_server, {"version": "1.1.5"})
    client.force_login(superuser)
    assert b"Up to date" in client.get(PAGE).content


def test_a_script_in_the_notes_is_rendered_as_text(client, superuser, registry_server):
    # The javascript: link is a well-formed markdown link, so it reaches the link rule.
    notes = '<script>alert("x")</script> see https://example.com/notes and [click](javascript:alert(1))'
    serve_and_check(registry_server, full_document({"version": "1.2.0", "notes": notes}))
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert '<script>alert("x")</script>' not in page
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in page
    assert '<a href="https://example.com/notes"' in page
    assert 'href="javascript:' not in page
    assert "[click](javascript:alert(1))" in page


def test_only_https_links_become_links():
    from updates.templatetags.update_notes import render_notes_html

    html = render_notes_html("a http://plain.example b [x](https://ok.example/p) c data:text/html,hi")
    assert '<a href="https://ok.example/p"' in html
    assert 'href="http://plain' not in html
    assert "data:text/html,hi" in html
    assert html.count("<a ") == 1


def test_stale_information_says_stale_since_never_up_to_date(client, superuser, registry_server):
    serve_and_check(registry_server, {"version": "1.1.5"})
    registry_server.serve("/version.json", respond(b"", status=500))
    for _ in range(3):
        run_check(RegistryCheck.Trigger.MANUAL)
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert "Update information is stale since" in page
    assert "Up to date" not in page


def test_the_last_check_error_is_shown_escaped(client, superuser, registry_server):
    registry_server.serve("/version.json", respond(b"<b>oops</b>"))
    run_check(RegistryCheck.Trigger.MANUAL)
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert "not JSON" in page


def test_check_now_runs_a_check_and_reports_it(client, checker, registry_server):
    registry_server.serve_json("/version.json", {"version": "1.2.0"})
    client.force_login(checker)
    response = client.post(reverse("updates_check_now"), follow=True)
    assert response.status_code == 200
    assert b"Version 1.2.0 is available." in response.content
    assert RegistryCheck.objects.get().trigger == "manual"


def test_check_now_needs_post(client, superuser, registry_server):
    client.force_login(superuser)
    assert client.get(reverse("updates_check_now")).status_code == 405
    assert RegistryCheck.objects.count() == 0


def test_check_now_needs_csrf(superuser, registry_server):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(reverse("updates_check_now")).status_code == 403
    assert RegistryCheck.objects.count() == 0


def test_anonymous_cannot_check_now(client, registry_server):
    response = client.post(reverse("updates_check_now"))
    assert response.status_code == 302
    assert RegistryCheck.objects.count() == 0


def test_superuser_can_skip_and_unskip_a_version(client, superuser, registry_server):
    serve_and_check(registry_server, {"version": "1.2.0"})
    client.force_login(superuser)
    client.post(reverse("updates_skip"), {"version": "1.2.0"})
    state = RegistryState.load()
    assert state.skipped_versions == ["1.2.0"]
    assert state.offer().update_available is False
    assert b"Offer 1.2.0 again" in client.get(PAGE).content
    client.post(reverse("updates_unskip"), {"version": "1.2.0"})
    assert RegistryState.load().skipped_versions == []


def test_staff_without_permission_cannot_skip(client, staff_user, registry_server):
    serve_and_check(registry_server, {"version": "1.2.0"})
    client.force_login(staff_user)
    assert client.post(reverse("updates_skip"), {"version": "1.2.0"}).status_code == 403
    assert RegistryState.load().skipped_versions == []


def test_skipping_garbage_is_refused(client, superuser):
    client.force_login(superuser)
    response = client.post(reverse("updates_skip"), {"version": "<script>"}, follow=True)
    assert b"That is not a version." in response.content
    assert RegistryState.load().skipped_versions == []


def test_the_operator_can_skip(client, operator, registry_server):
    serve_and_check(registry_server, {"version": "1.2.0"})
    client.force_login(operator)
    assert b"Skip this version" in client.get(PAGE).content
    client.post(reverse("updates_skip"), {"version": "1.2.0"})
    assert RegistryState.load().skipped_versions == ["1.2.0"]


def test_anonymous_cannot_skip(client, registry_server):
    serve_and_check(registry_server, {"version": "1.2.0"})
    assert client.post(reverse("updates_skip"), {"version": "1.2.0"}).status_code == 302
    assert RegistryState.load().skipped_versions == []


def test_a_registry_that_never_answered_says_there_is_no_information(client, superuser, registry_server):
    registry_server.serve("/version.json", respond(b"", status=500))
    for _ in range(3):
        run_check(RegistryCheck.Trigger.MANUAL)
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert "No update information yet (checks keep failing)" in page
    assert "Up to date" not in page


def test_an_expired_document_says_stale_since_its_expiry(client, superuser, registry_server):
    from datetime import UTC, datetime, timedelta

    serve_and_check(registry_server, {"version": "1.1.5"})
    expired = (datetime.now(UTC) - timedelta(days=3)).replace(second=0, microsecond=0)
    RegistryState.objects.update(expires_at=expired, last_success_at=expired - timedelta(days=1))
    client.force_login(superuser)
    page = client.get(PAGE).content.decode()
    assert f"Update information is stale since {expired:%Y-%m-%d %H:%M}:" in page
    assert "Up to date" not in page
