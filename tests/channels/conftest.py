"""Fixtures of the channel tests: real receivers on 127.0.0.1, short timeouts, and the same
in-process Celery and SMTP test servers as the mail tests (`testing/`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testing.beat import eager_celery as eager
from testing.channels import CONNECT_TIMEOUT, READ_TIMEOUT
from testing.smtp import Certs, SmtpTestServer, make_certs, smtp_servers
from testing.webhook_receiver import Receiver, receivers
from updates.channels import chat, webhook


@pytest.fixture(autouse=True)
def _short_timeouts(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    for module in (webhook, chat):
        monkeypatch.setattr(module, "CONNECT_TIMEOUT", CONNECT_TIMEOUT)
        monkeypatch.setattr(module, "READ_TIMEOUT", READ_TIMEOUT)
        monkeypatch.setattr(module, "DEADLINE", 10.0)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OPENTRACE_VERSION = "1.1.5"
    settings.OPENTRACE_INSTANCE_NAME = "Acme Analytics"
    settings.OPENTRACE_BASE_URL = "https://analytics.acme.test"


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    yield from receivers()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def smtp_server(certs: Certs) -> Iterator[Callable[..., SmtpTestServer]]:
    yield from smtp_servers(certs)


@pytest.fixture
def eager_celery() -> Iterator[Any]:
    """Tasks run in-process when enqueued, retries included; errors are not propagated."""
    with eager(propagate=False) as app:
        yield app
