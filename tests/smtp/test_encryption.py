"""The SMTP password at rest: encrypted, rotatable, and a lost key is an explanation, not a crash."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from smtpconfig import crypto
from smtpconfig.models import SmtpSettings
from testing.smtp import SMTP_PASSWORD, SMTP_USER, configure_smtp

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def stored_column() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM smtpconfig_smtpsettings")
        return cursor.fetchone()[0]


def test_the_password_column_never_holds_the_plaintext():
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)

    raw = stored_column()

    assert raw
    assert SMTP_PASSWORD not in raw
    assert SmtpSettings.load().get_password() == SMTP_PASSWORD


def test_rotation_with_two_keys_then_removing_the_old_key_still_decrypts(settings):
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)
    before = stored_column()

    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY, OLD_KEY]
    call_command("rotate_secrets")
    after = stored_column()
    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY]

    assert after != before
    assert SmtpSettings.load().get_password() == SMTP_PASSWORD
    assert crypto.decrypt(after, [NEW_KEY]) == SMTP_PASSWORD


def test_without_rotation_removing_the_old_key_is_a_clear_error(settings):
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)

    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY]

    with pytest.raises(crypto.SecretKeyError, match="OPENTRACE_SECRETS_KEY"):
        SmtpSettings.load().get_password()
    assert "cannot be decrypted" in SmtpSettings.load().password_problem()


def test_rotate_secrets_fails_loudly_and_leaves_an_undecryptable_secret_alone(settings):
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)
    before = stored_column()
    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY]

    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_secrets")

    assert stored_column() == before


def test_rotate_secrets_with_nothing_stored_succeeds(capsys):
    SmtpSettings.load()

    call_command("rotate_secrets")

    assert "Re-encrypted 0 secret(s)" in capsys.readouterr().out


@pytest.mark.parametrize("token", ["", "garbage", "gAAAAA" + "A" * 80, "ünïcode"])
def test_malformed_tokens_are_a_secret_key_error(token):
    with pytest.raises(crypto.SecretKeyError):
        crypto.decrypt(token)


def test_an_empty_key_list_is_a_secret_key_error():
    with pytest.raises(crypto.SecretKeyError, match="empty"):
        crypto.encrypt("x", [])


def test_the_admin_explains_an_undecryptable_password_instead_of_crashing(client, superuser, settings):
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    row = configure_smtp(username=SMTP_USER, password=SMTP_PASSWORD)
    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY]
    client.force_login(superuser)

    page = client.get(f"/admin/smtpconfig/smtpsettings/{row.pk}/change/")

    assert page.status_code == 200
    assert "The stored SMTP password cannot be used" in page.text
    assert "OPENTRACE_SECRETS_KEY" in page.text


def test_the_test_email_reports_an_undecryptable_password(client, superuser, settings, smtp_server):
    server = smtp_server("none")
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)
    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY]
    client.force_login(superuser)

    page = client.post("/admin/smtpconfig/smtpsettings/test-email/", {"to": "a@example.com"}, follow=True)

    assert page.status_code == 200
    assert "The SMTP password cannot be used" in page.text
    assert server.received == []
