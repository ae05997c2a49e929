"""Settings → SMTP configuration in the admin: one row, validated, password write-only, test email."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from smtpconfig.models import NoticeLog, SmtpSettings
from testing.smtp import SMTP_PASSWORD, SMTP_USER, configure_smtp

pytestmark = pytest.mark.django_db

CHANGE_URL = "/admin/smtpconfig/smtpsettings/1/change/"
TEST_EMAIL_URL = "/admin/smtpconfig/smtpsettings/test-email/"


def form_data(**overrides) -> dict:
    data = {
        "enabled": "on",
        "host": "smtp.example.com",
        "port": "587",
        "security": "starttls",
        "username": SMTP_USER,
        "password": "",
        "from_address": "OpenTrace <ops@example.com>",
        "timeout": "10",
        "recipients": "ops@example.com, cto@example.com",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def admin_client(client, superuser) -> Client:
    client.force_login(superuser)
    return client


def test_the_settings_section_lists_smtp_configuration(admin_client):
    page = admin_client.get("/admin/")

    settings_app = next(app for app in page.context["app_list"] if app["name"] == "Settings")
    names = [model["name"] for model in settings_app["models"]]
    assert "SMTP configuration" in names
    assert "Notice log" in names


def test_the_list_goes_straight_to_the_single_row(admin_client):
    page = admin_client.get("/admin/smtpconfig/smtpsettings/")

    assert page.status_code == 302
    assert page.url == CHANGE_URL
    assert SmtpSettings.objects.count() == 1


def test_there_is_no_add_or_delete(admin_client):
    SmtpSettings.load()

    assert admin_client.get("/admin/smtpconfig/smtpsettings/add/").status_code == 403
    assert admin_client.post("/admin/smtpconfig/smtpsettings/1/delete/").status_code == 403
    assert SmtpSettings.objects.count() == 1


def test_saving_encrypts_the_password_and_never_renders_it_back(admin_client):
    response = admin_client.post(CHANGE_URL, form_data(password=SMTP_PASSWORD))

    assert response.status_code == 302
    row = SmtpSettings.load()
    assert row.get_password() == SMTP_PASSWORD
    page = admin_client.get(CHANGE_URL)
    assert SMTP_PASSWORD not in page.text
    assert row.password_encrypted not in page.text
    assert "A password is stored" in page.text


def test_the_password_is_hidden_from_error_reports(admin_client):
    response = admin_client.post(CHANGE_URL, form_data(password=SMTP_PASSWORD))

    assert response.wsgi_request.sensitive_post_parameters == ("password",)


def test_a_blank_password_keeps_the_stored_one(admin_client):
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)

    admin_client.post(CHANGE_URL, form_data(host="smtp2.example.com"))

    row = SmtpSettings.load()
    assert row.host == "smtp2.example.com"
    assert row.get_password() == SMTP_PASSWORD


def test_the_checkbox_clears_the_stored_password(admin_client):
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)

    admin_client.post(CHANGE_URL, form_data(clear_password="on"))

    assert SmtpSettings.load().has_password is False


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"port": "0"}, "port", "greater than or equal to 1"),
        ({"port": "65536"}, "port", "less than or equal to 65535"),
        ({"port": "25; rm -rf /"}, "port", "whole number"),
        ({"host": "smtp://mail.example.com"}, "host", "without a scheme"),
        ({"host": "mail example com"}, "host", "not a valid host name"),
        ({"host": ""}, "host", "A host is needed"),
        ({"security": "both"}, "security", "valid choice"),
        ({"from_address": "ops@example.com\r\nBcc: victim@example.com"}, "from_address", "one line"),
        ({"from_address": "not an address"}, "from_address", "not an email address"),
        ({"recipients": "ops@example.com, nope, also bad@"}, "recipients", "'nope'"),
        ({"timeout": "0"}, "timeout", "greater than or equal to 1"),
        ({"timeout": "100000"}, "timeout", "less than or equal to 300"),
        ({"username": "", "password": "pw-without-user"}, "username", "needs a username"),
        ({"password": "line\nbreak"}, "password", "line breaks"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(admin_client, overrides, field, message):
    configure_smtp(host="before.example.com")

    page = admin_client.post(CHANGE_URL, form_data(**overrides))

    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert SmtpSettings.load().host == "before.example.com"


TYPED_PASSWORD = "typed-Pa55word-that-must-not-echo"


@pytest.mark.parametrize(
    "overrides",
    [
        {"port": "0"},
        {"host": ""},
        {"recipients": "nope"},
        {"clear_password": "on"},
    ],
    ids=["bad-port", "no-host", "bad-recipient", "password-and-clear"],
)
def test_a_typed_password_is_not_rendered_back_when_the_form_is_refused(admin_client, overrides):
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)

    page = admin_client.post(CHANGE_URL, form_data(password=TYPED_PASSWORD, **overrides))

    assert page.status_code == 200
    assert page.context["adminform"].form.errors  # refused, shown again for correction
    assert TYPED_PASSWORD not in page.text
    assert SMTP_PASSWORD not in page.text
    assert SmtpSettings.load().get_password() == SMTP_PASSWORD


def test_a_new_password_and_clear_together_are_refused(admin_client):
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)

    page = admin_client.post(CHANGE_URL, form_data(password="new-one", clear_password="on"))

    assert page.status_code == 200
    assert "not both" in page.text
    assert SmtpSettings.load().get_password() == SMTP_PASSWORD


def test_send_test_email_reports_success_and_the_mail_arrives(admin_client, smtp_server):
    server = smtp_server("none", users={SMTP_USER: SMTP_PASSWORD})
    configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)

    page = admin_client.post(TEST_EMAIL_URL, {"to": "alice@example.com"}, follow=True)

    assert page.status_code == 200
    assert "Test email sent to alice@example.com" in page.text
    assert server.received[0].rcpt_tos == ["alice@example.com"]
    assert SMTP_PASSWORD not in server.received[0].raw


def test_send_test_email_reports_the_servers_error_without_a_500(admin_client, smtp_server):
    server = smtp_server("none", users={SMTP_USER: SMTP_PASSWORD})
    configure_smtp(server, username=SMTP_USER, password="wrong-password")

    page = admin_client.post(TEST_EMAIL_URL, {"to": "alice@example.com"}, follow=True)

    assert page.status_code == 200
    assert "Test email to alice@example.com failed" in page.text
    assert "Authentication failed" in page.text
    assert "wrong-password" not in page.text


def test_send_test_email_reports_a_timeout(admin_client, hanging_server):
    configure_smtp(port=hanging_server, security="none", timeout=1)

    page = admin_client.post(TEST_EMAIL_URL, {"to": "alice@example.com"}, follow=True)

    assert "Timed out" in page.text


@pytest.mark.parametrize("to", ["", "not-an-address", "a@example.com\r\nBcc: x@example.com"])
def test_send_test_email_refuses_a_bad_address(admin_client, smtp_server, to):
    server = smtp_server("none")
    configure_smtp(server)

    page = admin_client.post(TEST_EMAIL_URL, {"to": to}, follow=True)

    assert "Test email not sent" in page.text
    assert server.received == []


def test_send_test_email_needs_post(admin_client):
    assert admin_client.get(TEST_EMAIL_URL).status_code == 405


def test_send_test_email_needs_the_change_permission(client, staff_user, smtp_server):
    server = smtp_server("none")
    configure_smtp(server)
    client.force_login(staff_user)

    assert client.post(TEST_EMAIL_URL, {"to": "a@example.com"}).status_code == 403

    staff_user.user_permissions.add(Permission.objects.get(codename="change_smtpsettings"))
    assert client.post(TEST_EMAIL_URL, {"to": "a@example.com"}).status_code == 302
    assert len(server.received) == 1


def test_send_test_email_needs_a_csrf_token(superuser, smtp_server):
    server = smtp_server("none")
    configure_smtp(server)
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)

    assert client.post(TEST_EMAIL_URL, {"to": "a@example.com"}).status_code == 403
    assert server.received == []


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.post(TEST_EMAIL_URL, {"to": "a@example.com"})

    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_the_notice_log_is_read_only(admin_client):
    entry = NoticeLog.objects.create(kind="update_available", key="1.2.0", recipient="ops@example.com")

    assert admin_client.get("/admin/smtpconfig/noticelog/").status_code == 200
    assert admin_client.get(f"/admin/smtpconfig/noticelog/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/smtpconfig/noticelog/add/").status_code == 403
    admin_client.post(f"/admin/smtpconfig/noticelog/{entry.pk}/change/", {"recipient": "x@example.com"})
    entry.refresh_from_db()
    assert entry.recipient == "ops@example.com"


def test_the_page_offers_send_test_email_to_the_admins_own_address(admin_client, superuser):
    page = admin_client.get(CHANGE_URL)

    assert 'formaction="/admin/smtpconfig/smtpsettings/test-email/"' in page.text
    assert ">Send test email</button>" in page.text
    assert f'value="{superuser.email}"' in page.text


def test_a_view_only_user_sees_the_settings_but_no_test_button(client, staff_user):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_smtpsettings"))
    client.force_login(staff_user)

    page = client.get(CHANGE_URL)

    assert page.status_code == 200
    assert "Send test email" not in page.text
