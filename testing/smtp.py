"""Real SMTP servers (aiosmtpd) on 127.0.0.1, certificates from a throwaway CA, and helpers.

`smtp_servers(certs)` gives a `start(...)` that starts a server for one test: plain, STARTTLS
or implicit TLS, with or without AUTH, optionally answering the first N messages with a
temporary (451) or permanent (550) failure. It records what it accepted as parsed
`email.message.EmailMessage`s. The fixtures that wrap these are in `tests/smtp/conftest.py`
(and, for the suites that send mail too, in theirs).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from smtpconfig.models import SmtpSettings

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-Pa55word!"  # checked for in every message and page: it must never leak


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "no text/plain part"
        return part.get_content()

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, "no text/html part"
        return part.get_content()

    @property
    def raw(self) -> str:
        return self.message.as_string()


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    # Replies used instead of "250" for the next messages, e.g. ["451 4.3.0 Try again"].
    data_replies: list[str] = field(default_factory=list)
    attempts: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 OK"


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self.users.get(user) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class _Controller(Controller):
    """aiosmtpd's Controller, listening on a free port chosen by the kernel (port 0)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpTestServer:
    controller: _Controller
    handler: Handler
    security: str

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    server: trustme.LeafCert

    def server_context(self) -> Any:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        return context


def make_certs(folder: Path) -> Certs:
    """A throwaway CA (its certificate in `folder`/ca.pem) and a server certificate for 127.0.0.1."""
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certs(ca=ca, ca_file=ca_file, server=ca.issue_cert("127.0.0.1", "localhost"))


def smtp_servers(certs: Certs) -> Iterator[Callable[..., SmtpTestServer]]:
    """For a fixture: yields a `start(security, users, data_replies)`; stops every server afterwards."""
    started: list[_Controller] = []

    def start(
        security: str = "none",
        users: dict[str, str] | None = None,
        data_replies: list[str] | None = None,
    ) -> SmtpTestServer:
        handler = Handler(data_replies=list(data_replies or []))
        kwargs: dict[str, Any] = {"server_hostname": "smtp.test", "ready_timeout": 5.0}
        if security == "starttls":
            kwargs.update(tls_context=certs.server_context(), require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=certs.server_context())
        if users is not None:
            # aiosmtpd refuses AUTH before STARTTLS unless told otherwise; on plain SMTP we
            # allow it, and on implicit TLS it cannot tell the socket is already encrypted.
            kwargs.update(
                authenticator=_Authenticator(users),
                auth_required=True,
                auth_require_tls=security == "starttls",
            )
        controller = _Controller(handler, hostname="127.0.0.1", port=0, **kwargs)
        controller.start()
        started.append(controller)
        return SmtpTestServer(controller, handler, security)

    yield start
    for controller in started:
        controller.stop()


@contextlib.contextmanager
def hanging_server() -> Iterator[int]:
    """A port that accepts connections and never says a word, until the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def configure_smtp(server: SmtpTestServer | None = None, **fields: Any) -> SmtpSettings:
    """Enable the SMTP settings row, pointed at `server` unless fields say otherwise."""
    row = SmtpSettings.load()
    row.enabled = True
    row.host = "127.0.0.1"
    if server is not None:
        row.port = server.port
        row.security = server.security
    row.timeout = 5
    row.from_address = "OpenTrace Ops <ops@opentrace.test>"
    password = fields.pop("password", None)
    for name, value in fields.items():
        setattr(row, name, value)
    if password is not None:
        row.set_password(password)
    row.full_clean()
    row.save()
    return row
