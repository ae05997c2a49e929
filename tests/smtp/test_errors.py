"""Every way a server can fail is reported by name, with `permanent` telling whether to retry."""

from __future__ import annotations

import time

import pytest

from smtpconfig import mailer
from testing.smtp import SMTP_PASSWORD, SMTP_USER, configure_smtp

pytestmark = pytest.mark.django_db


def failure(row) -> mailer.MailError:
    with pytest.raises(mailer.MailError) as caught:
        mailer.send_test_email(row, "alice@example.com")
    assert SMTP_PASSWORD not in str(caught.value)
    return caught.value


def test_the_test_email_arrives_with_both_the_instance_and_the_transport(smtp_server, settings):
    settings.OPENTRACE_INSTANCE_NAME = "Acme Analytics"
    server = smtp_server("none")
    row = configure_smtp(server)

    transport = mailer.send_test_email(row, "alice@example.com")

    [got] = server.received
    assert got.rcpt_tos == ["alice@example.com"]
    assert got.message["Subject"] == "[Acme Analytics] Test email"
    assert settings.OPENTRACE_BASE_URL in got.text
    assert transport.describe() in got.text


def test_wrong_credentials_are_an_auth_failure(smtp_server, trust_test_ca):
    server = smtp_server("starttls", users={SMTP_USER: SMTP_PASSWORD})
    row = configure_smtp(server, username=SMTP_USER, password="not-the-password")

    error = failure(row)

    assert (error.kind, error.permanent) == ("auth", True)
    assert "Authentication failed" in str(error)
    assert "535" in str(error)
    assert server.received == []


def test_a_server_that_wants_auth_but_gets_none_is_reported(smtp_server):
    server = smtp_server("none", users={SMTP_USER: SMTP_PASSWORD})
    row = configure_smtp(server)

    error = failure(row)

    assert error.kind == "sender_refused"
    assert "530" in str(error)


def test_nothing_listening_is_a_refused_connection(closed_port):
    row = configure_smtp(port=closed_port, security="none")

    error = failure(row)

    assert (error.kind, error.permanent) == ("refused", False)
    assert f"127.0.0.1:{closed_port}" in str(error)


def test_an_untrusted_certificate_is_a_tls_error(smtp_server):
    # No trust_test_ca: the client verifies against the system CAs, which do not know ours.
    server = smtp_server("tls")
    row = configure_smtp(server)

    error = failure(row)

    assert (error.kind, error.permanent) == ("tls", True)
    assert "certificate" in str(error)


def test_starttls_against_a_server_without_it_is_a_tls_error(smtp_server):
    server = smtp_server("none")
    row = configure_smtp(server, security="starttls")

    error = failure(row)

    assert error.kind == "tls"
    assert "STARTTLS" in str(error)


def test_implicit_tls_against_a_plain_port_is_a_tls_error(smtp_server, trust_test_ca):
    server = smtp_server("none")
    row = configure_smtp(server, security="tls")

    error = failure(row)

    assert error.kind == "tls"


def test_a_hanging_server_times_out_within_the_configured_timeout(hanging_server):
    row = configure_smtp(port=hanging_server, security="none", timeout=1)

    started = time.monotonic()
    error = failure(row)
    elapsed = time.monotonic() - started

    assert (error.kind, error.permanent) == ("timeout", False)
    assert "within 1 s" in str(error)
    assert elapsed < 3


def test_a_permanent_rejection_of_the_message_is_permanent(smtp_server):
    server = smtp_server("none", data_replies=["550 5.7.1 Message rejected as spam"])
    row = configure_smtp(server)

    error = failure(row)

    assert (error.kind, error.permanent) == ("server_error", True)
    assert "550 5.7.1 Message rejected as spam" in str(error)


def test_a_temporary_rejection_of_the_message_is_transient(smtp_server):
    server = smtp_server("none", data_replies=["451 4.3.0 Try again later"])
    row = configure_smtp(server)

    error = failure(row)

    assert (error.kind, error.permanent) == ("server_error", False)


def test_a_row_without_host_cannot_send():
    row = configure_smtp(enabled=False, host="")

    error = failure(row)

    assert (error.kind, error.permanent) == ("config", True)
