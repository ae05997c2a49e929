"""An update that fails and is rolled back, reported through the real agent API as the agent
reports it (signed batches, one of them sent twice): every channel gets one notice per
transition it asked for, a failing channel changes nothing for the others or for the run."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from smtpconfig.models import NoticeLog
from testing.agent_client import EVENTS, event, post, post_events
from testing.channels import make_channel
from testing.factories import make_run
from testing.smtp import configure_smtp
from testing.webhook_receiver import Reply
from updates import tasks
from updates.channels.models import NotificationChannel
from updates.models import UpdateRun
from updates.notice_kinds import NoticeKind

APPRISE = NotificationChannel.Kind.APPRISE


def agent_batches() -> list[list[dict]]:
    """What the agent sends for an update that fails its health check and rolls back."""
    return [
        [event(1, "run", state="running"), event(2, "step", step="preflight", state="started")],
        [
            event(3, "step", step="preflight", state="succeeded"),
            event(4, "step", step="backup", state="succeeded"),
            event(5, "step", step="migrate", state="succeeded"),
            event(6, "step", step="healthcheck", state="started"),
            event(7, "log", step="healthcheck", lines=[f"waiting for /healthz ({n})" for n in range(1, 31)]),
        ],
        [
            event(8, "step", step="healthcheck", state="failed", message="/healthz never reported 1.2.0"),
            event(9, "step", step="rollback", state="started"),
            event(10, "step", step="rollback", state="succeeded"),
            event(
                11, "run", state="rolled_back", message="healthcheck failed: /healthz never reported 1.2.0"
            ),
        ],
    ]


@pytest.mark.django_db(transaction=True)
def test_one_notice_per_channel_per_transition_across_a_rollback(
    client,
    superuser,
    receiver,
    smtp_server,
    eager_celery,
    monkeypatch,
):
    monkeypatch.setattr(tasks.send_channel_notice, "max_retries", 2)
    mailbox = smtp_server("none")
    configure_smtp(mailbox)
    everything, chat, failures_only, broken, disabled = (
        receiver(),
        receiver(),
        receiver(),
        receiver(*[Reply(500)] * 50),
        receiver(),
    )
    make_channel(everything.url(), name="everything")
    make_channel(f"json://127.0.0.1:{chat.port}/chat", kind=APPRISE, name="chat")
    make_channel(failures_only.url(), name="failures", notices=[NoticeKind.RUN_FAILED])
    make_channel(broken.url(), name="broken")
    make_channel(disabled.url(), name="disabled", enabled=False)
    run = make_run()

    batches = agent_batches()
    for batch in batches:
        response = post_events(client, run.pk, *batch)
        assert response.status_code == 200, response.content
    # The last batch again: the agent's retry after a lost answer, signed anew a second later.
    retry = post(
        client, EVENTS, {"run_id": str(run.pk), "events": batches[2]}, timestamp=int(time.time()) + 1
    )
    assert retry.status_code == 200, retry.content

    run.refresh_from_db()
    assert run.status == "rolled_back"
    assert [b["event"] for b in everything.bodies()] == ["run_started", "run_failed"]
    started, failed = everything.bodies()
    assert started["run"]["outcome"] == "running"
    assert failed["run"]["outcome"] == "rolled_back"
    assert failed["run"]["failed_step"] == "healthcheck"
    assert failed["run"]["log_tail"][-1] == "waiting for /healthz (30)"
    assert [b["title"] for b in chat.bodies()] == [
        "[Acme Analytics] Update to 1.2.0 started",
        "[Acme Analytics] Update to 1.2.0 failed and was rolled back",
    ]
    assert [b["event"] for b in failures_only.bodies()] == ["run_failed"]
    assert disabled.received == []
    # The broken channel was tried (and retried) for both, and failed, alone.
    assert len(broken.received) == 2 * 3
    per_channel = Counter(
        (entry.channel, entry.kind, entry.status) for entry in NoticeLog.objects.exclude(channel="email")
    )
    assert per_channel == {
        ("everything", "run_started", "sent"): 1,
        ("everything", "run_failed", "sent"): 1,
        ("chat", "run_started", "sent"): 1,
        ("chat", "run_failed", "sent"): 1,
        ("failures", "run_failed", "sent"): 1,
        ("broken", "run_started", "failed"): 1,
        ("broken", "run_failed", "failed"): 1,
    }
    # Mail went its own way: one per recipient per transition.
    assert [m.message["Subject"] for m in mailbox.received] == [
        "[Acme Analytics] Update to 1.2.0 started",
        "[Acme Analytics] Update to 1.2.0 failed and was rolled back",
    ]
    assert set(NoticeLog.objects.filter(channel="email").values_list("recipient", flat=True)) == {
        superuser.email
    }

    # The notices asked for again (a signal delivered twice, a task re-run) send nothing new.
    for status in ("running", "rolled_back"):
        tasks.announce_to_channels.apply_async(args=["run_status", [str(run.pk), status]])
    assert len(everything.received) == 2
    assert len(chat.received) == 2
    assert len(failures_only.received) == 1
    assert len(broken.received) == 6
    assert UpdateRun.objects.get(pk=run.pk).status == "rolled_back"
