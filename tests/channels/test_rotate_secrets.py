"""`rotate_secrets` re-encrypts the channels' URLs and webhook secrets with the SMTP password."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from smtpconfig import crypto
from testing.channels import make_channel
from updates.channels.models import NotificationChannel

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
LOST_KEY = Fernet.generate_key().decode()
URL = "https://hooks.example.com/services/T0/B0/secret-path"


def test_rotation_re_encrypts_every_channel_under_the_newest_key(settings, capsys):
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    hook, secret = make_channel(URL, name="hook")
    chat, _ = make_channel("ntfy://opentrace-alerts", kind=NotificationChannel.Kind.APPRISE, name="chat")

    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY, OLD_KEY]
    call_command("rotate_secrets")

    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out
    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY]  # the old key removed
    hook.refresh_from_db()
    chat.refresh_from_db()
    assert crypto.decrypt(hook.url_encrypted, [NEW_KEY]) == URL
    assert crypto.decrypt(hook.secret_encrypted, [NEW_KEY]) == secret
    assert chat.get_url() == "ntfy://opentrace-alerts"
    assert hook.secret_problem() is None


def test_a_channel_whose_key_is_gone_is_named_and_left_alone(settings):
    settings.OPENTRACE_SECRETS_KEY = [LOST_KEY]
    lost, _ = make_channel(URL, name="lost")
    settings.OPENTRACE_SECRETS_KEY = [OLD_KEY]
    kept, _ = make_channel(URL, name="kept")
    before = lost.url_encrypted, lost.secret_encrypted

    settings.OPENTRACE_SECRETS_KEY = [NEW_KEY, OLD_KEY]
    with pytest.raises(
        CommandError, match="notification channel “lost”: A stored secret cannot be decrypted"
    ):
        call_command("rotate_secrets")

    lost.refresh_from_db()
    kept.refresh_from_db()
    assert (lost.url_encrypted, lost.secret_encrypted) == before
    assert crypto.decrypt(kept.url_encrypted, [NEW_KEY]) == URL
    assert "cannot be decrypted" in (lost.secret_problem() or "")
