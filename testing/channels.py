"""The channel tests' harness: channels saved as the admin saves them, and their timeouts."""

from __future__ import annotations

from updates.channels.forms import ChannelForm
from updates.channels.models import NotificationChannel
from updates.notice_kinds import NoticeKind

# Timeouts the tests wait for: long enough for a 2-core machine under load, short enough
# that a hanging receiver costs a second or two.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 1.5


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
    return channel, channel.shown_once_secret  # type: ignore[attr-defined]  # the form's, never stored
