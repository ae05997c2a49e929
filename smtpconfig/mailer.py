"""Outbound mail: THE boundary between OpenTrace and SMTP servers.

`resolve_transport()` decides, on every send, where mail goes: the SMTP settings row when it
is enabled, else the environment's EMAIL_URL (`settings.OPENTRACE_FALLBACK_EMAIL`), else the
console backend (mail printed to the log). `send()` and `send_test_email()` turn every
failure into a `MailError` whose `kind` names the cause (auth, refused, tls, timeout, ...)
and whose `permanent` flag says whether retrying can help. Messages never contain the
password.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import DatabaseError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from opentrace.redact import redact
from smtpconfig.crypto import SecretKeyError

logger = logging.getLogger(__name__)

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


class MailError(Exception):
    """A message could not be sent. `kind` is one of: auth, refused, tls, timeout,
    disconnected, recipient_refused, sender_refused, server_error, network, secret, config."""

    def __init__(self, kind: str, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.permanent = permanent

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Transport:
    source: str  # "smtp_settings", "EMAIL_URL" or "console"
    backend_path: str
    host: str = ""
    port: int | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    security: str = "none"  # none, starttls, tls
    timeout: float | None = None
    from_email: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_console(self) -> bool:
        return self.backend_path == CONSOLE_BACKEND

    def describe(self) -> str:
        if self.backend_path != SMTP_BACKEND:
            return f"{self.source} ({self.backend_path.rsplit('.', 2)[-2]} backend)"
        who = f"{self.username}@" if self.username else ""
        security = {"none": "no TLS", "starttls": "STARTTLS", "tls": "implicit TLS"}.get(self.security, "")
        source = "SMTP configuration" if self.source == "smtp_settings" else self.source
        return f"{who}{self.host}:{self.port} ({security}; {source})"

    @sensitive_variables("options")
    def connection(self, fail_silently: bool = False) -> BaseEmailBackend:
        options: dict[str, Any] = dict(self.extra)
        if self.backend_path == SMTP_BACKEND:
            options.update(
                host=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.security == "starttls",
                use_ssl=self.security == "tls",
                timeout=self.timeout,
            )
        return get_connection(self.backend_path, fail_silently=fail_silently, **options)


CONSOLE = Transport(source="console", backend_path=CONSOLE_BACKEND)


@sensitive_variables("password")
def transport_from_row(row: Any) -> Transport:
    """The transport the SMTP settings row describes; raises MailError when it cannot be used."""
    if not row.host:
        raise MailError("config", "No SMTP host is configured: enter and save a host first.", permanent=True)
    try:
        password = row.get_password()
    except SecretKeyError as exc:
        raise MailError("secret", f"The SMTP password cannot be used: {exc}", permanent=True) from None
    return Transport(
        source="smtp_settings",
        backend_path=SMTP_BACKEND,
        host=row.host,
        port=row.port,
        username=row.username,
        password=password,
        security=row.security,
        timeout=float(row.timeout),
        from_email=row.from_address,
    )


@sensitive_variables("config")
def transport_from_environment(config: dict[str, Any] | None) -> Transport | None:
    if not config:
        return None
    backend_path = str(config.get("EMAIL_BACKEND") or SMTP_BACKEND)
    if backend_path != SMTP_BACKEND:
        extra = {"file_path": config["EMAIL_FILE_PATH"]} if config.get("EMAIL_FILE_PATH") else {}
        return Transport(source="EMAIL_URL", backend_path=backend_path, extra=extra)
    security = "tls" if config.get("EMAIL_USE_SSL") else "starttls" if config.get("EMAIL_USE_TLS") else "none"
    options = config.get("OPTIONS") or {}
    timeout = options.get("EMAIL_TIMEOUT") or config.get("EMAIL_TIMEOUT") or 10
    return Transport(
        source="EMAIL_URL",
        backend_path=SMTP_BACKEND,
        host=str(config.get("EMAIL_HOST") or ""),
        port=int(config["EMAIL_PORT"]) if config.get("EMAIL_PORT") else None,
        username=str(config.get("EMAIL_HOST_USER") or ""),
        password=str(config.get("EMAIL_HOST_PASSWORD") or ""),
        security=security,
        timeout=float(timeout),
    )


def resolve_transport() -> Transport:
    """Where mail goes right now. Raises MailError when the enabled SMTP row is unusable
    (e.g. its password cannot be decrypted): falling back silently would hide that."""
    from smtpconfig.models import SmtpSettings

    try:
        row = SmtpSettings.objects.filter(enabled=True).first()
    except DatabaseError:
        # Before `migrate` has run the table does not exist; mail still has somewhere to go.
        logger.warning("SMTP settings table unreadable; using the environment's email settings")
        row = None
    if row is not None:
        return transport_from_row(row)
    return transport_from_environment(settings.OPENTRACE_FALLBACK_EMAIL) or CONSOLE


def _scrub(text: str, transport: Transport | None) -> str:
    text = redact(text)
    if transport is not None and transport.password and len(transport.password) >= 3:
        text = text.replace(transport.password, "***")
    return text[:1000]


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    message = exc.smtp_error
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"{exc.smtp_code} {message}".strip()


def classify(exc: BaseException, transport: Transport | None = None) -> MailError:
    """Name the cause of a sending failure in words an operator can act on."""
    if isinstance(exc, MailError):
        return exc
    where = f" ({transport.host}:{transport.port})" if transport and transport.host else ""
    if isinstance(exc, BadHeaderError):
        return MailError("config", f"The message is malformed: {exc}", permanent=True)
    if isinstance(exc, SecretKeyError):
        return MailError("secret", f"The SMTP password cannot be used: {exc}", permanent=True)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        reply = _scrub(_smtp_reply(exc), transport)
        return MailError("auth", f"Authentication failed{where}: {reply}", permanent=True)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        text = str(exc)
        if "STARTTLS" in text.upper():
            return MailError("tls", f"TLS error{where}: the server does not offer STARTTLS", permanent=True)
        if "AUTH" in text.upper():
            return MailError(
                "auth",
                f"Authentication failed{where}: the server does not offer AUTH on this connection "
                "(does it need STARTTLS or TLS?)",
                permanent=True,
            )
        return MailError("server_error", f"Server error{where}: {_scrub(text, transport)}", permanent=True)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = []
        permanent = True
        for rcpt, (code, message) in exc.recipients.items():
            said = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            replies.append(f"{rcpt}: {code} {said}")
            permanent = permanent and code >= 500
        return MailError(
            "recipient_refused",
            f"Recipient refused{where}: {_scrub('; '.join(replies), transport)}",
            permanent=permanent,
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return MailError(
            "sender_refused",
            f"Sender {exc.sender!r} refused{where}: {_scrub(_smtp_reply(exc), transport)}",
            permanent=exc.smtp_code >= 500,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return MailError(
            "server_error",
            f"Server error{where}: {_scrub(_smtp_reply(exc), transport)}",
            permanent=exc.smtp_code >= 500,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
        # smtplib reports a read timeout as "Connection unexpectedly closed: timed out".
        exc = exc.__context__
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return MailError(
            "disconnected",
            f"The server closed the connection{where}: {_scrub(str(exc), transport) or 'no reason given'}",
            permanent=False,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailError(
            "tls",
            f"TLS error{where}: the server's certificate is not trusted ({exc.verify_message})",
            permanent=True,
        )
    if isinstance(exc, ssl.SSLError):
        hint = ""
        if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc):
            hint = " (is this port plain SMTP or STARTTLS rather than implicit TLS?)"
        return MailError("tls", f"TLS error{where}: {exc.reason or exc}{hint}", permanent=True)
    if isinstance(exc, TimeoutError):
        seconds = f" within {transport.timeout:g} s" if transport and transport.timeout else ""
        return MailError("timeout", f"Timed out{where}: the server did not answer{seconds}", permanent=False)
    if isinstance(exc, ConnectionRefusedError):
        return MailError(
            "refused", f"Connection refused{where}: nothing is listening on that port", permanent=False
        )
    if isinstance(exc, socket.gaierror):
        return MailError("network", f"Cannot resolve the host name{where}: {exc}", permanent=False)
    if isinstance(exc, OSError):
        return MailError("network", f"Network error{where}: {_scrub(str(exc), transport)}", permanent=False)
    if isinstance(exc, smtplib.SMTPException):
        return MailError("server_error", f"SMTP error{where}: {_scrub(str(exc), transport)}", permanent=False)
    return MailError("error", f"{type(exc).__name__}{where}: {_scrub(str(exc), transport)}", permanent=False)


def send(message: EmailMultiAlternatives, transport: Transport | None = None) -> Transport:
    """Send one message; returns the transport used. Raises MailError."""
    try:
        transport = transport or resolve_transport()
        if not message.from_email or message.from_email == settings.DEFAULT_FROM_EMAIL:
            message.from_email = transport.from_email or settings.DEFAULT_FROM_EMAIL
        connection = transport.connection(fail_silently=False)
        try:
            connection.open()
            sent = connection.send_messages([message])
        finally:
            connection.close()
    except Exception as exc:
        raise classify(exc, transport) from None
    if not sent:
        raise MailError("config", "The message had no recipients", permanent=True)
    return transport


def send_test_email(row: Any, to: str) -> Transport:
    """Send a test message through the settings `row` (enabled or not); raises MailError."""
    transport = transport_from_row(row)
    instance = settings.OPENTRACE_INSTANCE_NAME
    body = (
        f"This is a test email from {instance} ({settings.OPENTRACE_BASE_URL}).\n\n"
        f"It was sent through {transport.describe()} at {timezone.now():%Y-%m-%d %H:%M:%S %Z}.\n"
        "If you received it, OpenTrace can send password resets and update notices.\n"
    )
    message = EmailMultiAlternatives(subject=f"[{instance}] Test email", body=body, to=[to])
    return send(message, transport)
