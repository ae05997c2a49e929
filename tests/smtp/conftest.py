"""Real SMTP servers (aiosmtpd) on 127.0.0.1, certificates from a throwaway CA, and helpers.

`smtp_server(...)` starts a server for one test: plain, STARTTLS or implicit TLS, with or
without AUTH, optionally answering the first N messages with a temporary (451) or permanent
(550) failure. It records what it accepted as parsed `email.message.EmailMessage`s.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from opentrace.celery import app as celery_app
from smtpconfig.models import SmtpSettings

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-Pa55word!"  # checked for in every message and page: it must never leak


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # aiosmtpd warns about AUTH without TLS; ours exist only on 127.0.0.1 inside a test.
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"))


@pytest.fixture(autouse=True)
def smtp_test_settings(settings: Any) -> None:
    """pytest-django swaps EMAIL_BACKEND for the in-memory one; these tests send for real."""
    import opentrace.settings as project_settings

    settings.EMAIL_BACKEND = project_settings.EMAIL_BACKEND
    # The named users' PBKDF2 hashing costs most of a second per test on this machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certs(ca=ca, ca_file=ca_file, server=ca.issue_cert("127.0.0.1", "localhost"))


@pytest.fixture
def trust_test_ca(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the throwaway CA the way production trusts system CAs (OpenSSL's
    SSL_CERT_FILE): certificate and host name verification stay on."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))


@pytest.fixture
def smtp_server(certs: Certs) -> Iterator[Callable[..., SmtpTestServer]]:
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


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens: bound without listening for the test, so
    no other test or worker can start a server on it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
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
    yield listener.getsockname()[1]
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


@pytest.fixture
def eager_celery() -> Iterator[Any]:
    """Tasks run in-process when enqueued; their retries run for real (Celery re-applies the
    task with retries + 1), only the countdown is not waited for. Errors are not propagated
    because Celery would propagate the Retry too; tests check results and the notice log."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False
    yield celery_app
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous
