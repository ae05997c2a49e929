"""Fixtures of the channel tests: real receivers on 127.0.0.1, short timeouts, channels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.channels.receiver import Receiver, Reply, receivers

# The same in-process Celery and SMTP test servers as the mail tests.
from tests.smtp.conftest import certs, eager_celery, smtp_server  # noqa: F401
from updates.channels import chat, webhook
from updates.channels.forms import ChannelForm
from updates.channels.models import NotificationChannel
from updates.notice_kinds import NoticeKind

# Timeouts the tests wait for: long enough for a 2-core machine under load, short enough
# that a hanging receiver costs a second or two.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 1.5


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


def make_channel(
    url: str,
    *,
    kind: str = NotificationChannel.Kind.WEBHOOK,
    name: str = "Ops hook",
    notices: list[str] | None = None,
    enabled: bool = True,
) -> tuple[NotificationChannel, str]:
    """A channel saved through its admin form (so the URL is checked as on the page); the
    webhook secret it generated, shown once ('' for Apprise)."""
    form = ChannelForm(
        data={
            "name": name,
            "enabled": "on" if enabled else "",
            "kind": kind,
            "url": url,
            "notices": list(NoticeKind.values) if notices is None else notices,
        }
    )
    assert form.is_valid(), form.errors
    channel = form.save()
    return channel, channel.shown_once_secret


__all__ = ["Reply", "make_channel"]
