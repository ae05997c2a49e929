"""Webhook channels against a real receiver on 127.0.0.1: the body, its signature (checked
with the recipe docs/notices.md gives), retries on 5xx and on a receiver that hangs, none
on 4xx, and no redirect followed."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from smtpconfig.models import NoticeLog
from testing import agent_client
from testing.channels import READ_TIMEOUT, make_channel
from testing.helpers import ROOT
from testing.webhook_receiver import Reply
from updates import tasks
from updates.channels import webhook
from updates.channels.models import NotificationChannel
from updates.models import EventIn, UpdateRun
from updates.notice_kinds import NoticeKind

pytestmark = pytest.mark.django_db


def documented_verify():
    """The `verify()` of docs/notices.md, exactly as a receiver would copy it."""
    text = (ROOT / "docs" / "notices.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "docs/notices.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


@pytest.fixture
def failed_run(superuser) -> UpdateRun:
    """A run that failed at healthcheck and was rolled back, with 60 log lines."""
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
    lines = [f"healthcheck line {n:02d}" for n in range(1, 61)]
    run.record_events(
        [
            EventIn(seq=1, kind="log", step="healthcheck", lines=lines),
            EventIn(seq=2, kind="step", step="healthcheck", state="failed", message="no 1.2.2 on /healthz"),
        ]
    )
    run.mark_finished("rolled_back", failed_step="healthcheck", error="no 1.2.2 on /healthz")
    run.refresh_from_db()
    return run


def send(channel: NotificationChannel, run: UpdateRun, status: str = "rolled_back"):  # type: ignore[no-untyped-def]
    return tasks.send_channel_notice.apply_async(args=[channel.pk, "run_status", [str(run.pk), status]])


def test_the_body_is_the_documented_json(receiver, failed_run, eager_celery, settings):
    hook = receiver()
    channel, _ = make_channel(hook.url("/opentrace/hook?team=ops"))

    send(channel, failed_run)

    [request] = hook.received
    assert request.path == "/opentrace/hook?team=ops"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["X-OpenTrace-Event"] == "run_failed"
    body = request.json()
    assert set(body) == {
        "event",
        "notice_id",
        "test",
        "title",
        "text",
        "created_at",
        "instance",
        "versions",
        "release",
        "run",
        "scheduled_for",
    }
    assert body["event"] == "run_failed"
    assert body["notice_id"] == f"run_failed:{failed_run.pk}:rolled_back"
    assert request.headers["X-OpenTrace-Delivery"] == body["notice_id"]
    assert body["test"] is False
    assert body["instance"] == {"name": "Acme Analytics", "url": "https://analytics.acme.test"}
    assert body["versions"] == {"running": "1.1.5", "from": "1.1.5", "to": "1.2.2"}
    assert body["title"] == "[Acme Analytics] Update to 1.2.2 failed and was rolled back"
    run = body["run"]
    assert run["id"] == str(failed_run.pk)
    assert run["outcome"] == "rolled_back"
    assert run["failed_step"] == "healthcheck"
    assert run["error"] == "no 1.2.2 on /healthz"
    assert run["requested_by"] == "root_admin"
    assert run["log_tail"] == [f"healthcheck line {n:02d}" for n in range(11, 61)]  # the last 50
    assert run["url"] == f"https://analytics.acme.test/admin/updates/updaterun/{failed_run.pk}/change/"
    assert body["release"] is None
    assert body["scheduled_for"] is None


def test_the_signature_verifies_with_the_documented_recipe(receiver, failed_run, eager_celery):
    verify = documented_verify()
    hook = receiver()
    channel, secret = make_channel(hook.url())
    assert len(secret) >= 40

    send(channel, failed_run)

    [request] = hook.received
    timestamp = request.headers["X-OpenTrace-Timestamp"]
    signature = request.headers["X-OpenTrace-Signature"]
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", signature)
    assert abs(int(timestamp) - time.time()) < 60
    assert verify(secret, timestamp, signature, request.body)
    # The recipe refuses what it should: another secret, a changed body, an old timestamp.
    assert not verify("another-secret", timestamp, signature, request.body)
    assert not verify(secret, timestamp, signature, request.body.replace(b"rolled_back", b"succeeded"))
    old = str(int(timestamp) - 600)
    assert not verify(secret, old, webhook.signature(secret, old, request.body), request.body)
    # It is the agent requests' recipe (SPEC §6), header names included.
    as_the_agent_signs = agent_client.sign(request.body, int(timestamp), secret)
    assert as_the_agent_signs["HTTP_X_OPENTRACE_SIGNATURE"] == signature


def test_a_5xx_is_retried_until_the_receiver_takes_it(receiver, failed_run, eager_celery):
    hook = receiver(Reply(500, b"database is locked"), Reply(503))
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    assert len(hook.received) == 3
    assert len({r.headers["X-OpenTrace-Delivery"] for r in hook.received}) == 1  # the same notice
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts, entry.channel) == ("sent", 3, "Ops hook")
    channel.refresh_from_db()
    assert channel.last_outcome == "sent"


def test_a_receiver_that_hangs_is_given_up_on_and_retried(receiver, failed_run, eager_celery):
    hook = receiver(Reply(hang=True), Reply(hang=True))
    channel, _ = make_channel(hook.url())
    started = time.monotonic()

    send(channel, failed_run)

    assert time.monotonic() - started < 10 * READ_TIMEOUT + 5  # gave up on each hang quickly
    assert len(hook.received) == 3
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("sent", 3)


def test_a_waiting_retry_says_why(receiver, failed_run, settings):
    hook = receiver(Reply(hang=True))
    channel, _ = make_channel(hook.url())
    # Called directly, a task is on its final attempt: this shows the error it records.
    tasks.send_channel_notice(channel.pk, "run_status", [str(failed_run.pk), "rolled_back"])

    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert entry.status == "failed"
    assert entry.error == f"http://127.0.0.1:{hook.port} did not answer within {READ_TIMEOUT:g} s"
    channel.refresh_from_db()
    assert (channel.last_outcome, channel.last_error) == ("failed", entry.error)


def test_a_4xx_is_not_retried(receiver, failed_run, eager_celery):
    hook = receiver(Reply(404, b'{"error": "no such hook"}'))
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    assert len(hook.received) == 1
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("failed", 1)
    assert entry.error == f'http://127.0.0.1:{hook.port} answered 404 Not Found: {{"error": "no such hook"}}'


def test_a_429_is_retried(receiver, failed_run, eager_celery):
    hook = receiver(Reply(429))
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    assert len(hook.received) == 2
    assert NoticeLog.objects.get(recipient=channel.log_recipient).status == "sent"


def test_a_receiver_that_runs_out_of_retries_fails(receiver, failed_run, eager_celery, monkeypatch):
    monkeypatch.setattr(tasks.send_channel_notice, "max_retries", 2)
    hook = receiver(*[Reply(502)] * 10)
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    assert len(hook.received) == 3
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("failed", 3)
    assert "answered 502 Bad Gateway" in entry.error


def test_a_redirect_to_another_host_is_refused(receiver, failed_run, eager_celery):
    elsewhere = receiver()
    hook = receiver(Reply(307, location=f"http://localhost:{elsewhere.port}/steal"))
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    assert len(hook.received) == 1
    assert elsewhere.received == []  # neither the body nor its signature went there
    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("failed", 1)
    assert "307 Temporary Redirect redirecting to localhost" in entry.error
    assert "do not follow redirects" in entry.error


def test_a_refused_connection_is_retried(failed_run, eager_celery, monkeypatch):
    from testing.helpers import closed_port

    monkeypatch.setattr(tasks.send_channel_notice, "max_retries", 1)
    channel, _ = make_channel(f"http://127.0.0.1:{closed_port()}/hook")

    send(channel, failed_run)

    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert (entry.status, entry.attempts) == ("failed", 2)
    assert entry.error.endswith("refused the connection")


def test_the_answer_is_read_only_up_to_the_cap(receiver, failed_run, eager_celery, monkeypatch):
    monkeypatch.setattr(webhook, "MAX_RESPONSE_BYTES", 1024)
    hook = receiver(Reply(400, b"x" * 5_000_000))
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    entry = NoticeLog.objects.get(recipient=channel.log_recipient)
    assert entry.status == "failed"
    assert entry.error.endswith("x" * webhook.SNIPPET_CHARS)
    assert len(entry.error) < 400


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/x", "plain http:// is only allowed for this machine"),
        ("ftp://127.0.0.1/x", "Enter an https:// URL"),
        ("https:///nohost", "Enter an https:// URL"),
        ("https://user:pw@hooks.example.com/x", "no user name or password"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https://hooks.example.com/a b", "spaces"),
    ],
)
def test_a_webhook_url_that_is_not_https_is_refused(url, problem):
    assert problem in (webhook.url_problem(url) or "")


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://localhost:8080/x", "http://[::1]:9/x"]
)
def test_https_and_loopback_http_are_accepted(url):
    assert webhook.url_problem(url) is None


def test_the_secret_is_per_channel_and_stored_encrypted(receiver):
    hook = receiver()
    first, first_secret = make_channel(hook.url(), name="first")
    second, second_secret = make_channel(hook.url(), name="second")

    assert first_secret != second_secret
    for channel, secret in ((first, first_secret), (second, second_secret)):
        channel.refresh_from_db()
        assert secret not in channel.secret_encrypted
        assert hook.url() not in channel.url_encrypted
        assert channel.get_secret() == secret
        assert channel.url_hint == f"http://127.0.0.1:{hook.port}"


def test_the_json_is_compact_utf8(receiver, failed_run, eager_celery):
    failed_run.to_version = "1.2.2"
    hook = receiver()
    channel, _ = make_channel(hook.url())

    send(channel, failed_run)

    raw = hook.received[0].body
    assert "→".encode() in raw  # not \\u2192
    assert json.loads(raw)["text"].startswith("1.1.5 → 1.2.2")


def test_a_security_release_reaches_who_gets_it(receiver, eager_celery, settings):
    from updates.models import RegistryState

    state = RegistryState.load()
    state.releases = [{"version": "1.2.0", "severity": "security", "notes": "Fixes CVE-1"}]
    state.save(update_fields=["releases"])
    everything = receiver()
    security_only = receiver()
    started_only = receiver()
    make_channel(everything.url(), name="all versions", notices=[NoticeKind.UPDATE_AVAILABLE])
    make_channel(security_only.url(), name="security", notices=[NoticeKind.SECURITY_RELEASE])
    make_channel(started_only.url(), name="runs", notices=[NoticeKind.RUN_STARTED])

    tasks.announce_to_channels.apply_async(args=["update_available", ["1.2.0"]])

    for hook in (everything, security_only):
        [body] = hook.bodies()
        assert body["event"] == "security_release"
        assert body["release"] == {"version": "1.2.0", "severity": "security", "notes": "Fixes CVE-1"}
        assert body["versions"] == {"running": "1.1.5", "from": "1.1.5", "to": "1.2.0"}
    assert started_only.received == []


def test_a_normal_release_skips_security_only_channels(receiver, eager_celery):
    from updates.models import RegistryState

    state = RegistryState.load()
    state.releases = [{"version": "1.2.0"}]
    state.save(update_fields=["releases"])
    everything = receiver()
    security_only = receiver()
    make_channel(everything.url(), name="all versions", notices=[NoticeKind.UPDATE_AVAILABLE])
    make_channel(security_only.url(), name="security", notices=[NoticeKind.SECURITY_RELEASE])

    tasks.announce_to_channels.apply_async(args=["update_available", ["1.2.0"]])
    tasks.announce_to_channels.apply_async(args=["update_available", ["1.2.0"]])  # a second check

    assert [b["event"] for b in everything.bodies()] == ["update_available"]
    assert security_only.received == []
