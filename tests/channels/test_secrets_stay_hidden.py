"""The webhook secret and the channels' URLs appear on exactly one page — the secret on the
page after the save that made it — and in no other rendered page, no log line (DEBUG
included, Apprise's and urllib3's too), no error and no notice log entry."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from django.urls import reverse

from smtpconfig.models import NoticeLog
from testing.helpers import closed_port
from testing.webhook_receiver import Reply
from updates import tasks
from updates.channels.models import NotificationChannel
from updates.models import UpdateRun

pytestmark = pytest.mark.django_db

WEBHOOK_PATH_TOKEN = "whPathT0ken8e5f1c"
CHAT_PASSWORD = "chatPa55w0rd7d2a"
CHAT_PATH_TOKEN = "chatPathT0ken3b9e"


class Pages:
    """Every page the test renders, to search afterwards."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.seen: list[tuple[str, str]] = []

    def get(self, url: str):  # type: ignore[no-untyped-def]
        response = self.client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        self.seen.append((url, response.content.decode()))
        return response

    def post(self, url: str, data: dict):  # type: ignore[no-untyped-def]
        response = self.client.post(url, data, follow=True)
        self.seen.append((url, response.content.decode()))
        return response


@pytest.fixture
def run(superuser) -> UpdateRun:
    run = UpdateRun.objects.create(
        from_version="1.1.5",
        to_version="1.2.2",
        git_tag="v1.2.2",
        requested_by=superuser,
        requested_by_username=superuser.username,
        manifest=b"{}",
        idempotency_key=uuid.uuid4().hex,
    )
    run.mark_running()
    run.mark_finished("rolled_back", failed_step="healthcheck", error="unhealthy")
    return run


def test_no_page_log_line_or_error_shows_the_secret_or_a_url(
    client, superuser, receiver, run, eager_celery, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    for name in ("apprise", "urllib3"):  # their DEBUG lines are where paths would leak
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setattr(tasks.send_channel_notice, "max_retries", 1)
    hook = receiver(*[Reply(500, b"try later")] * 20)
    chat = receiver(*[Reply(500, b"try later")] * 20)
    webhook_url = hook.url(f"/hooks/{WEBHOOK_PATH_TOKEN}?sig=1")
    chat_url = f"json://bot:{CHAT_PASSWORD}@127.0.0.1:{chat.port}/chat/{CHAT_PATH_TOKEN}"
    client.force_login(superuser)
    pages = Pages(client)
    add = reverse("admin:updates_notificationchannel_add")
    notices = ["run_started", "run_failed"]

    # A webhook: the answer to its save is the one page with the secret.
    pages.get(add)
    created = client.post(
        add, {"name": "Ops hook", "enabled": "on", "kind": "webhook", "url": webhook_url, "notices": notices}
    )
    assert created.status_code == 200
    [secret] = re.findall(r'id="webhook-secret" readonly value="([^"]+)"', created.content.decode())
    assert webhook_url not in created.content.decode()
    hook_channel = NotificationChannel.objects.get(name="Ops hook")

    # A chat service, then every page about them.
    pages.post(add, {"name": "Chat", "enabled": "on", "kind": "apprise", "url": chat_url, "notices": notices})
    chat_channel = NotificationChannel.objects.get(name="Chat")
    for channel in (hook_channel, chat_channel):
        change = reverse("admin:updates_notificationchannel_change", args=[channel.pk])
        pages.get(change)
        pages.post(reverse("admin:updates_notificationchannel_send_test", args=[channel.pk]), {})
        # A bad edit comes back with an error: what was typed is not put back into the form.
        bad = (
            f"http://example.com/{WEBHOOK_PATH_TOKEN}"
            if channel == hook_channel
            else f"slack://{CHAT_PATH_TOKEN}%zz"
        )
        answer = pages.post(change, {"name": channel.name, "enabled": "on", "url": bad, "notices": notices})
        assert "errorlist" in answer.content.decode()
    pages.post(
        add,
        {"name": "Typo", "kind": "apprise", "url": f"discord://{CHAT_PASSWORD}", "notices": notices},
    )
    # The update's notices, failing and retried, through the tasks.
    for status in ("running", "rolled_back"):
        tasks.announce_to_channels.apply_async(args=["run_status", [str(run.pk), status]])
    # And a channel pointing nowhere: connection errors carry the URL in urllib3's messages.
    chat_channel.set_url(
        f"json://bot:{CHAT_PASSWORD}@127.0.0.1:{closed_port()}/chat/{CHAT_PATH_TOKEN}", "json://…"
    )
    chat_channel.save()
    pages.post(reverse("admin:updates_notificationchannel_send_test", args=[chat_channel.pk]), {})
    pages.get(reverse("admin:updates_notificationchannel_changelist"))
    pages.get(reverse("admin:smtpconfig_noticelog_changelist"))
    for entry in NoticeLog.objects.all():
        pages.get(reverse("admin:smtpconfig_noticelog_change", args=[entry.pk]))

    assert len(hook.received) >= 3  # the notices did go out
    assert len(chat.received) >= 3
    assert NoticeLog.objects.filter(status="failed").count() >= 4
    forbidden = [secret, webhook_url, WEBHOOK_PATH_TOKEN, chat_url, CHAT_PASSWORD, CHAT_PATH_TOKEN]
    for url, content in pages.seen:
        for value in forbidden:
            assert value not in content, f"{value!r} rendered on {url}"
    log_lines = [record.getMessage() for record in caplog.records] + [caplog.text]
    assert any("Socket Exception" in line for line in log_lines)  # Apprise's DEBUG lines were captured
    for line in log_lines:
        for value in forbidden:
            assert value not in line, f"{value!r} logged: {line[:300]}"
    stored = [*NoticeLog.objects.values_list("error", flat=True)]
    stored += [c.last_error for c in NotificationChannel.objects.all()]
    stored += [c.url_encrypted + c.secret_encrypted + c.url_hint for c in NotificationChannel.objects.all()]
    for text in stored:
        for value in forbidden:
            assert value not in text
    # The errors are still worth reading.
    assert any("answered 500 Internal Server Error: try later" in text for text in stored)
    assert any(text.startswith("JSON: A Connection error occurred") for text in stored)
