"""Chat-service channels through Apprise, against a real receiver: Apprise's `json://`
target POSTs to 127.0.0.1 what a chat service would get. URLs are checked when saved."""

from __future__ import annotations

import base64
import uuid

import pytest

from smtpconfig.models import NoticeLog
from testing.channels import make_channel
from testing.webhook_receiver import Reply
from updates import tasks
from updates.channels import chat
from updates.channels.forms import ChannelForm
from updates.channels.models import NotificationChannel
from updates.models import UpdateRun

pytestmark = pytest.mark.django_db
APPRISE = NotificationChannel.Kind.APPRISE


@pytest.fixture
def started_run(superuser) -> UpdateRun:
    run = UpdateRun.objects.create(
        from_version="1.1.5",
        to_version="1.2.0",
        git_tag="v1.2.0",
        requested_by=superuser,
        requested_by_username=superuser.username,
        manifest=b"{}",
        idempotency_key=uuid.uuid4().hex,
    )
    run.mark_running()
    return run


def json_url(hook, path: str = "/chat") -> str:  # type: ignore[no-untyped-def]
    return f"json://bot:chat-Pa55@127.0.0.1:{hook.port}{path}"


def test_a_notice_reaches_the_service_through_apprise(receiver, started_run, eager_celery):
    hook = receiver()
    channel, secret = make_channel(json_url(hook), kind=APPRISE, name="Team chat")
    assert secret == ""  # only webhooks sign

    tasks.send_channel_notice.apply_async(args=[channel.pk, "run_status", [str(started_run.pk), "running"]])

    [request] = hook.received
    assert request.path == "/chat"
    # The credentials in the URL are what the service is logged in with.
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"bot:chat-Pa55").decode()
    body = request.json()
    assert body["title"] == "[Acme Analytics] Update to 1.2.0 started"
    assert "1.1.5 → 1.2.0 on Acme Analytics." in body["message"]
    assert f"/admin/updates/updaterun/{started_run.pk}/change/" in body["message"]
    assert body["type"] == "info"
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.kind, entry.status, entry.channel) == ("run_started", "sent", "Team chat")


def test_a_service_error_5xx_is_retried(receiver, started_run, eager_celery):
    hook = receiver(Reply(500), Reply(502))
    channel, _ = make_channel(json_url(hook), kind=APPRISE)

    tasks.send_channel_notice.apply_async(args=[channel.pk, "run_status", [str(started_run.pk), "running"]])

    assert len(hook.received) == 3
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("sent", 3)


def test_a_service_error_4xx_is_not_retried(receiver, started_run, eager_celery):
    hook = receiver(Reply(403))
    channel, _ = make_channel(json_url(hook), kind=APPRISE)

    tasks.send_channel_notice.apply_async(args=[channel.pk, "run_status", [str(started_run.pk), "running"]])

    assert len(hook.received) == 1
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("failed", 1)
    assert entry.error.startswith("JSON: Failed to send JSON POST notification")
    assert "error=403" in entry.error


def test_a_hanging_service_is_retried(receiver, started_run, eager_celery, monkeypatch):
    monkeypatch.setattr(tasks.send_channel_notice, "max_retries", 1)
    hook = receiver(Reply(hang=True))
    channel, _ = make_channel(json_url(hook), kind=APPRISE)

    tasks.send_channel_notice.apply_async(args=[channel.pk, "run_status", [str(started_run.pk), "running"]])

    assert len(hook.received) == 2
    assert NoticeLog.objects.get(recipient=channel.log_recipient).status == "sent"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("slack://", "Apprise cannot use this slack:// URL: An invalid Slack (first) Token () was specified"),
        ("discord://only-an-id", "Apprise cannot use this discord:// URL"),
        ("json://", "Apprise cannot use this json:// URL"),
        ("foo://bar/baz", "Apprise does not know the scheme foo://"),
        ("hooks.slack.com/services/T0/B0/X0", "This is not an Apprise URL"),
    ],
)
def test_a_malformed_or_unknown_url_is_refused_when_saved(url, message):
    form = ChannelForm(data={"name": "Chat", "enabled": "on", "kind": APPRISE, "url": url, "notices": []})

    assert not form.is_valid()
    [error] = form.errors["url"]
    assert error.startswith(message), error
    assert NotificationChannel.objects.count() == 0


@pytest.mark.parametrize(
    "url",
    [
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
        "ntfy://opentrace-alerts",
        "tgram://123456789:abcdefg_hijklmnop/12315544",
        "matrix://user:pass@matrix.example.com/#ops",
    ],
)
def test_the_usual_chat_urls_are_accepted_without_sending_anything(url):
    assert chat.url_problem(url) is None


def test_the_reason_apprise_gives_is_masked(settings):
    # Apprise quotes the bad token in its warning; the form's message must not.
    problem = chat.url_problem("slack://T1JJ3T3L2/A1BRTD4JD/SECRETtoken%zz")
    assert problem is not None
    assert "SECRETtoken" not in problem
    assert "Token (***)" in problem
