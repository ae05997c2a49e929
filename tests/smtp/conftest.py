"""Fixtures of the mail tests: real SMTP servers on 127.0.0.1 and a throwaway CA (`testing/smtp.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testing import helpers
from testing.beat import eager_celery as eager
from testing.smtp import Certs, SmtpTestServer, make_certs, smtp_servers
from testing.smtp import hanging_server as hanging


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


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def trust_test_ca(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the throwaway CA the way production trusts system CAs (OpenSSL's
    SSL_CERT_FILE): certificate and host name verification stay on."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))


@pytest.fixture
def smtp_server(certs: Certs) -> Iterator[Callable[..., SmtpTestServer]]:
    yield from smtp_servers(certs)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens, and nothing else can take (`testing.helpers`)."""
    return helpers.closed_port()


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with hanging() as port:
        yield port


@pytest.fixture
def eager_celery() -> Iterator[Any]:
    """Tasks run in-process when enqueued, retries included; errors are not propagated."""
    with eager(propagate=False) as app:
        yield app
