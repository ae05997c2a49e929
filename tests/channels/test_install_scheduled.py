""" "Scheduled install ahead": the signal a scheduler sends reaches the channels that get it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from testing.channels import make_channel
from updates import signals
from updates.models import RegistryState, ScheduledInstall
from updates.notice_kinds import NoticeKind
from updates.window import local_label

pytestmark = pytest.mark.django_db


def test_a_scheduled_install_is_announced_to_who_gets_it(
    receiver, eager_celery, django_capture_on_commit_callbacks
):
    state = RegistryState.load()
    state.releases = [{"version": "1.2.0", "severity": "normal", "notes": "Faster funnels"}]
    state.save(update_fields=["releases"])
    ahead, others = receiver(), receiver()
    make_channel(ahead.url(), name="ahead", notices=[NoticeKind.INSTALL_SCHEDULED])
    make_channel(others.url(), name="others", notices=[NoticeKind.RUN_STARTED, NoticeKind.UPDATE_AVAILABLE])
    when = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    ScheduledInstall.create(
        target_version="1.2.0", hops=["1.2.0"], not_before=when, in_window=True, automatic=True
    )

    with django_capture_on_commit_callbacks(execute=True):
        signals.install_scheduled.send(sender=None, version="1.2.0", scheduled_for=when)

    [body] = ahead.bodies()
    assert body["event"] == "install_scheduled"
    assert body["scheduled_for"] == when.isoformat()
    assert body["notice_id"] == f"install_scheduled:1.2.0:{when.isoformat()}"
    assert body["release"] == {"version": "1.2.0", "severity": "normal", "notes": "Faster funnels"}
    assert body["versions"] == {"running": "1.1.5", "from": "1.1.5", "to": "1.2.0"}
    assert body["title"].endswith(
        "1.2.0 will be installed on " + local_label(when, "UTC") + " — cancel or reschedule"
    )
    assert others.received == []


def test_a_notice_for_a_time_no_longer_scheduled_is_not_sent(
    receiver, eager_celery, django_capture_on_commit_callbacks
):
    ahead = receiver()
    make_channel(ahead.url(), name="ahead", notices=[NoticeKind.INSTALL_SCHEDULED])
    when = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    ScheduledInstall.create(
        target_version="1.2.0",
        hops=["1.2.0"],
        not_before=when + timedelta(days=1),
        in_window=True,
        automatic=True,
    )

    with django_capture_on_commit_callbacks(execute=True):
        signals.install_scheduled.send(sender=None, version="1.2.0", scheduled_for=when)

    assert ahead.received == []
