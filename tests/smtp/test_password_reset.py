"""Password reset by email, from the admin login page to logging in with the new password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from testing.smtp import configure_smtp

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-much-better-passphrase-42"


def reset_link(text: str) -> str:
    match = re.search(r"https?://\S+/admin/reset/\S+/", text)
    assert match, f"no reset link in: {text!r}"
    return match.group(0)


def test_the_login_page_offers_forgot_your_password(client):
    page = client.get("/admin/login/")

    assert page.status_code == 200
    assert 'href="/admin/password_reset/"' in page.text
    assert "Forgot your password?" in page.text


def test_password_reset_end_to_end(client, superuser, smtp_server, settings):
    settings.OPENTRACE_BASE_URL = "https://analytics.example.com"
    settings.OPENTRACE_INSTANCE_NAME = "Acme Analytics"
    server = smtp_server("none")
    configure_smtp(server)

    form = client.get("/admin/password_reset/")
    assert form.status_code == 200
    requested = client.post("/admin/password_reset/", {"email": superuser.email})
    assert requested.status_code == 302
    assert client.get(requested.url).status_code == 200  # "check your inbox"

    [got] = server.received
    assert got.rcpt_tos == [superuser.email]
    assert got.message["Subject"] == "[Acme Analytics] Reset your password"
    assert got.message["From"] == "OpenTrace Ops <ops@opentrace.test>"
    link = reset_link(got.text)
    assert link.startswith("https://analytics.example.com/admin/reset/")
    assert link in got.html

    # The link redirects to a URL that no longer carries the token, then takes the new password.
    landing = client.get(urlsplit(link).path)
    assert landing.status_code == 302
    set_form = client.get(landing.url)
    assert set_form.status_code == 200
    done = client.post(landing.url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert client.get(done.url).status_code == 200

    client.logout()
    assert client.login(username=superuser.username, password=NEW_PASSWORD)
    assert not client.login(username=superuser.username, password="correct-horse-1")


def test_a_used_link_does_not_work_twice(client, superuser, smtp_server):
    server = smtp_server("none")
    configure_smtp(server)
    client.post("/admin/password_reset/", {"email": superuser.email})
    path = urlsplit(reset_link(server.received[0].text)).path
    landing = client.get(path)
    client.post(landing.url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    again = client.get(path, follow=True)

    assert "The password reset link was invalid" in again.text


def test_a_forged_host_header_does_not_reach_the_mail(client, superuser, smtp_server, settings):
    settings.OPENTRACE_BASE_URL = "https://analytics.example.com"
    settings.ALLOWED_HOSTS = ["*"]
    server = smtp_server("none")
    configure_smtp(server)

    client.post("/admin/password_reset/", {"email": superuser.email}, HTTP_HOST="evil.example.net")

    text = server.received[0].text
    assert "evil.example.net" not in text
    assert "https://analytics.example.com/admin/reset/" in text


def test_an_unknown_address_sends_nothing_and_says_the_same(client, superuser, smtp_server):
    server = smtp_server("none")
    configure_smtp(server)

    response = client.post("/admin/password_reset/", {"email": "nobody@example.com"})

    assert response.status_code == 302  # no hint whether the address exists
    assert server.received == []


def test_a_mail_failure_does_not_break_the_reset_page(client, superuser, closed_port):
    configure_smtp(port=closed_port, security="none")

    response = client.post("/admin/password_reset/", {"email": superuser.email})

    assert response.status_code == 302


@pytest.mark.parametrize("email", ["", "not-an-email", "a@example.com\nBcc: x@example.com", "x" * 300])
def test_malformed_addresses_are_refused(client, superuser, smtp_server, email):
    server = smtp_server("none")
    configure_smtp(server)

    response = client.post("/admin/password_reset/", {"email": email})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert server.received == []
