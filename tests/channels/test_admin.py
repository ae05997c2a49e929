"""Settings → Notification channels: adding, the secret shown once, "Send test"."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from smtpconfig.models import NoticeLog
from testing.channels import make_channel
from testing.webhook_receiver import Reply
from updates.channels import webhook
from updates.channels.models import NotificationChannel

pytestmark = pytest.mark.django_db
ADD = "admin:updates_notificationchannel_add"


def change_url(channel: NotificationChannel) -> str:
    return reverse("admin:updates_notificationchannel_change", args=[channel.pk])


def send_test_url(channel: NotificationChannel) -> str:
    return reverse("admin:updates_notificationchannel_send_test", args=[channel.pk])


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


def shown_secret(response) -> str:  # type: ignore[no-untyped-def]
    [secret] = re.findall(r'id="webhook-secret" readonly value="([^"]+)"', response.content.decode())
    return secret


def test_the_settings_section_lists_notification_channels(client, superuser):
    client.force_login(superuser)
    page = client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:updates_notificationchannel_changelist")}"' in page
    assert "Notification channels" in page


def test_adding_a_webhook_shows_its_secret_once(client, superuser, receiver):
    hook = receiver()
    client.force_login(superuser)

    response = client.post(
        reverse(ADD),
        {
            "name": "Ops hook",
            "enabled": "on",
            "kind": "webhook",
            "url": hook.url(),
            "notices": ["run_failed"],
        },
    )

    assert response.status_code == 200
    assert "it is shown only this once" in response.content.decode()
    secret = shown_secret(response)
    channel = NotificationChannel.objects.get()
    assert channel.get_secret() == secret
    assert (channel.notices, channel.enabled, channel.url_hint) == (
        ["run_failed"],
        True,
        f"http://127.0.0.1:{hook.port}",
    )
    assert secret not in client.get(change_url(channel)).content.decode()


def test_a_new_secret_replaces_the_old_one(client, superuser, receiver):
    hook = receiver()
    channel, old_secret = make_channel(hook.url())
    client.force_login(superuser)

    response = client.post(
        change_url(channel),
        {"name": channel.name, "enabled": "on", "url": "", "notices": [], "regenerate_secret": "on"},
    )

    new_secret = shown_secret(response)
    assert new_secret != old_secret
    channel.refresh_from_db()
    assert channel.get_secret() == new_secret
    assert channel.get_url() == hook.url()  # a blank URL keeps the stored one
    client.post(send_test_url(channel))
    [request] = hook.received
    stamp, signature = request.headers["X-OpenTrace-Timestamp"], request.headers["X-OpenTrace-Signature"]
    assert webhook.signature(new_secret, stamp, request.body) == signature


def test_saving_without_a_new_secret_keeps_the_old_one(client, superuser, receiver):
    channel, secret = make_channel(receiver().url())
    client.force_login(superuser)

    response = client.post(
        change_url(channel), {"name": "Renamed", "enabled": "on", "url": "", "notices": []}
    )

    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.get_secret(), channel.notices) == ("Renamed", secret, [])


def test_the_kind_stays_what_the_channel_was_made_as(client, superuser, receiver):
    channel, _ = make_channel(receiver().url())
    client.force_login(superuser)

    client.post(
        change_url(channel), {"name": channel.name, "kind": "apprise", "url": "ntfy://x", "notices": []}
    )

    channel.refresh_from_db()
    assert channel.kind == "webhook"  # and ntfy:// was checked as a webhook URL, so refused
    assert channel.url_hint.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        ({"kind": "webhook", "url": ""}, "url", "Enter the URL notices are sent to."),
        ({"kind": "webhook", "url": "http://hooks.example.com/x"}, "url", "only allowed for this machine"),
        ({"kind": "apprise", "url": "slack://"}, "url", "Apprise cannot use this slack:// URL"),
        ({"kind": "apprise", "url": "nope://x"}, "url", "Apprise does not know the scheme nope://"),
        (
            {"kind": "webhook", "url": "https://hooks.example.com/x", "name": "Email"},
            "name",
            "names the mail notices",
        ),
    ],
)
def test_a_bad_channel_is_refused_with_a_clear_message(client, superuser, data, field, error):
    client.force_login(superuser)

    response = client.post(reverse(ADD), {"name": "Chat", "enabled": "on", "notices": [], **data})

    assert response.status_code == 200
    assert any(error in message for message in response.context["adminform"].form.errors[field])
    assert NotificationChannel.objects.count() == 0


def test_send_test_reports_success_and_lands_in_the_notice_log(client, superuser, receiver):
    hook = receiver()
    channel, _ = make_channel(hook.url(), enabled=False)  # a test goes out even while disabled
    client.force_login(superuser)

    response = client.post(send_test_url(channel), follow=True)

    assert messages_of(response) == [
        f"Test notice sent to “Ops hook”: http://127.0.0.1:{hook.port} answered 200."
    ]
    [body] = hook.bodies()
    assert (body["event"], body["test"]) == ("test", True)
    assert body["title"] == "[Acme Analytics] Test notice from OpenTrace"
    entry = NoticeLog.objects.get()
    assert (entry.kind, entry.channel, entry.recipient, entry.status) == (
        "test",
        "Ops hook",
        channel.log_recipient,
        "sent",
    )
    page = client.get(reverse("admin:smtpconfig_noticelog_changelist")).content.decode()
    assert "Ops hook" in page


def test_send_test_reports_the_services_error_in_one_sentence(client, superuser, receiver):
    hook = receiver(Reply(404, b"no such hook"))
    channel, _ = make_channel(hook.url())
    client.force_login(superuser)

    response = client.post(send_test_url(channel), follow=True)

    where = f"http://127.0.0.1:{hook.port}"
    assert messages_of(response) == [
        f"Test notice to “Ops hook” failed: {where} answered 404 Not Found: no such hook."
    ]
    channel.refresh_from_db()
    assert channel.last_outcome == "failed"
    assert NoticeLog.objects.get().status == "failed"
    assert "failed" in client.get(reverse("admin:updates_notificationchannel_changelist")).content.decode()


def test_send_test_is_a_list_action_too(client, superuser, receiver):
    first, second = receiver(), receiver()
    one, _ = make_channel(first.url(), name="one")
    two, _ = make_channel(second.url(), name="two")
    client.force_login(superuser)

    response = client.post(
        reverse("admin:updates_notificationchannel_changelist"),
        {"action": "send_test_action", "_selected_action": [one.pk, two.pk]},
        follow=True,
    )

    assert [m.split(":")[0] for m in messages_of(response)] == [
        "Test notice sent to “one”",
        "Test notice sent to “two”",
    ]
    assert len(first.received) == len(second.received) == 1


def test_send_test_needs_the_change_permission_and_a_post(client, staff_user, superuser, receiver):
    hook = receiver()
    channel, _ = make_channel(hook.url())

    client.force_login(superuser)
    assert client.get(send_test_url(channel)).status_code == 405
    client.force_login(staff_user)
    assert client.post(send_test_url(channel)).status_code == 403
    staff_user.user_permissions.add(Permission.objects.get(codename="change_notificationchannel"))
    assert client.post(send_test_url(channel)).status_code == 302
    assert len(hook.received) == 1


def test_a_channel_whose_key_is_gone_says_so(client, superuser, receiver, settings):
    from cryptography.fernet import Fernet

    channel, _ = make_channel(receiver().url())
    settings.OPENTRACE_SECRETS_KEY = [Fernet.generate_key().decode()]
    client.force_login(superuser)

    page = client.get(change_url(channel))
    assert any("cannot be decrypted" in m for m in messages_of(page))
    response = client.post(send_test_url(channel), follow=True)
    reported, *_ = messages_of(response)  # then the channel's page says it again
    assert reported == (
        "Test notice to “Ops hook” failed: its stored URL or secret cannot be decrypted with any key in "
        "OPENTRACE_SECRETS_KEY (restore the old key, or enter the URL again and generate a new secret)."
    )
