"""All Django mail goes through the SMTP settings row, read on every send."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.test import override_settings

from smtpconfig import mailer
from smtpconfig.models import SmtpSettings
from testing.smtp import SMTP_PASSWORD, SMTP_USER, configure_smtp

pytestmark = pytest.mark.django_db


def send_both_parts(to: str = "alice@example.com") -> int:
    message = EmailMultiAlternatives("Weekly report", "Plain body ✓", to=[to], cc=["carol@example.com"])
    message.attach_alternative("<p>HTML body ✓</p>", "text/html")
    return message.send()


def test_it_sends_over_plain_smtp(smtp_server):
    server = smtp_server("none")
    configure_smtp(server)

    assert send_both_parts() == 1

    [got] = server.received
    assert got.rcpt_tos == ["alice@example.com", "carol@example.com"]
    assert got.message["Subject"] == "Weekly report"
    assert got.text.strip() == "Plain body ✓"
    assert got.html.strip() == "<p>HTML body ✓</p>"


def test_it_uses_the_configured_from_address(smtp_server):
    server = smtp_server("none")
    configure_smtp(server, from_address="Analytics <analytics@opentrace.test>")

    mail.send_mail("Hello", "Body", None, ["alice@example.com"])

    [got] = server.received
    assert got.mail_from == "analytics@opentrace.test"
    assert got.message["From"] == "Analytics <analytics@opentrace.test>"


def test_it_keeps_an_explicit_from_address(smtp_server):
    server = smtp_server("none")
    configure_smtp(server)

    mail.send_mail("Hello", "Body", "someone@opentrace.test", ["alice@example.com"])

    assert server.received[0].mail_from == "someone@opentrace.test"


def test_it_sends_over_starttls_with_auth(smtp_server, trust_test_ca):
    server = smtp_server("starttls", users={SMTP_USER: SMTP_PASSWORD})
    configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)

    assert send_both_parts() == 1

    [got] = server.received
    assert got.message["Subject"] == "Weekly report"
    assert SMTP_PASSWORD not in got.raw


def test_it_sends_over_implicit_tls_with_auth(smtp_server, trust_test_ca):
    server = smtp_server("tls", users={SMTP_USER: SMTP_PASSWORD})
    configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)

    assert send_both_parts() == 1

    assert server.received[0].text.strip() == "Plain body ✓"


def test_it_reads_the_settings_on_every_send(smtp_server):
    first, second = smtp_server("none"), smtp_server("none")
    configure_smtp(first)
    send_both_parts()

    configure_smtp(second)
    send_both_parts()

    assert len(first.received) == 1
    assert len(second.received) == 1


def test_a_disabled_row_falls_back_to_the_environment(smtp_server):
    server = smtp_server("none")
    configure_smtp(server, enabled=False)
    env = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": server.port, "EMAIL_BACKEND": mailer.SMTP_BACKEND}

    with override_settings(OPENTRACE_FALLBACK_EMAIL=env):
        send_both_parts()

    assert len(server.received) == 1


def test_the_environment_fallback_honours_its_tls_and_login(smtp_server, trust_test_ca):
    server = smtp_server("starttls", users={"env-user": "env-pass-123"})
    env = {
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": server.port,
        "EMAIL_HOST_USER": "env-user",
        "EMAIL_HOST_PASSWORD": "env-pass-123",
        "EMAIL_USE_TLS": True,
        "EMAIL_BACKEND": mailer.SMTP_BACKEND,
        "OPTIONS": {"EMAIL_TIMEOUT": 3},
    }

    with override_settings(OPENTRACE_FALLBACK_EMAIL=env):
        transport = mailer.resolve_transport()
        send_both_parts()

    assert (transport.source, transport.security, transport.timeout) == ("EMAIL_URL", "starttls", 3.0)
    assert len(server.received) == 1


def test_with_nothing_configured_mail_is_printed_to_the_console(capsys):
    SmtpSettings.load()  # a row exists but is not enabled

    with override_settings(OPENTRACE_FALLBACK_EMAIL=None):
        assert mailer.resolve_transport().is_console
        send_both_parts()

    assert "Subject: Weekly report" in capsys.readouterr().out


def test_an_unusable_password_fails_the_send_with_a_clear_error(smtp_server):
    server = smtp_server("none")
    row = configure_smtp(server, username=SMTP_USER, password=SMTP_PASSWORD)
    SmtpSettings.objects.filter(pk=row.pk).update(password_encrypted="gAAAAABnot-a-valid-token")

    with pytest.raises(mailer.MailError) as caught:
        send_both_parts()

    assert caught.value.kind == "secret"
    assert "OPENTRACE_SECRETS_KEY" in str(caught.value)
    assert server.received == []


def test_fail_silently_swallows_errors(closed_port):
    configure_smtp(port=closed_port, security="none")

    assert mail.send_mail("Hello", "Body", None, ["alice@example.com"], fail_silently=True) == 0


def test_the_project_sends_all_mail_through_the_configured_backend():
    import opentrace.settings as project_settings

    assert project_settings.EMAIL_BACKEND == "smtpconfig.backend.ConfiguredEmailBackend"


def test_one_connection_can_carry_several_messages(smtp_server):
    server = smtp_server("none")
    configure_smtp(server)

    with mail.get_connection() as connection:
        sent = connection.send_messages(
            [mail.EmailMessage(f"Digest {n}", "Body", to=[f"user{n}@example.com"]) for n in range(3)]
        )

    assert sent == 3
    assert [got.message["Subject"] for got in server.received] == ["Digest 0", "Digest 1", "Digest 2"]
