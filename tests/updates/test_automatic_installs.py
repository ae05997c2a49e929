"""The update policy at work, with Celery beat's schedule driven by the test's clock.

The clock starts before a maintenance window on the night Europe/Berlin moves its clocks
forward (found from today, so the tests pass whatever day they run); the beat ticks every
minute, the agent sends its heartbeat before each tick, and the policy's task decides.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine

from testing.beat import Beat
from testing.policies import heartbeat, publish, set_policy, transitions
from updates.models import ScheduledInstall, UpdateRun
from updates.notice_kinds import NoticeKind

pytestmark = pytest.mark.django_db

POLICY_ENTRY = "apply-update-policy"


# Found once, from the day the session starts (inside a test the clock has moved already).
FORWARD, _ = transitions("Europe/Berlin")


def window_night() -> datetime:
    """01:00 UTC on the day Berlin's clocks go forward: 03:00 CEST, when a 03:00 window opens."""
    return datetime.combine(FORWARD, time(1, 0), UTC)


@pytest.fixture
def clock():
    opens = window_night()
    with time_machine.travel(opens - timedelta(minutes=30), tick=False) as traveller:
        yield traveller


@pytest.fixture
def beat(clock, agent_heartbeats, eager_tasks):
    driven = Beat(clock, POLICY_ENTRY)
    driven.before_tick = agent_heartbeats
    return driven


@pytest.fixture
def agent_heartbeats():
    def send(now: datetime) -> None:
        heartbeat()

    return send


@pytest.fixture
def announced():
    """The "install scheduled" signals sent (mail and channels hear the same)."""
    from updates import signals

    seen: list[dict] = []

    def receiver(sender, **kwargs):
        seen.append(kwargs)

    signals.install_scheduled.connect(receiver, weak=False)
    yield seen
    signals.install_scheduled.disconnect(receiver)


def requested_versions() -> list[str]:
    return list(UpdateRun.objects.order_by("requested_at").values_list("to_version", flat=True))


def test_beat_calls_the_policy_task_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE[POLICY_ENTRY]
    assert (entry["task"], entry["schedule"]) == ("updates.tasks.apply_update_policy", 60.0)


def test_a_security_release_is_installed_inside_the_window_and_not_before(
    beat, registry_server, announced, django_capture_on_commit_callbacks
):
    set_policy("security", start=time(3, 0), minutes=60)
    opens = window_night()
    publish(registry_server, {"version": "1.2.1", "severity": "security", "notes": "CVE fix"})

    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(opens - timedelta(minutes=1))
    [scheduled] = ScheduledInstall.objects.all()
    assert (scheduled.status, scheduled.automatic, scheduled.not_before) == ("scheduled", True, opens)
    assert requested_versions() == []  # 01:59 CET, a minute before the clocks jump to 03:00 CEST
    assert [a["version"] for a in announced] == ["1.2.1"]
    assert announced[0]["scheduled_for"] == opens

    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(opens)
    assert requested_versions() == ["1.2.1"]
    scheduled.refresh_from_db()
    assert scheduled.status == "installing"
    run = UpdateRun.objects.get()
    assert (run.requested_by, run.status, run.severity) == (None, "requested", "security")


def test_outside_the_window_nothing_is_installed(
    beat, clock, registry_server, django_capture_on_commit_callbacks
):
    opens = window_night()
    # The window opens at 05:00 local: the whole night passes without one.
    set_policy("security", start=time(5, 0), minutes=30)
    publish(registry_server, {"version": "1.2.1", "severity": "critical"})

    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(opens + timedelta(hours=1, minutes=59), step=timedelta(minutes=7))

    assert requested_versions() == []
    assert ScheduledInstall.objects.get().not_before == opens + timedelta(hours=2)  # 05:00 CEST


def test_security_only_leaves_a_normal_release_to_the_admin(
    beat, registry_server, django_capture_on_commit_callbacks
):
    set_policy("security")
    publish(registry_server, {"version": "1.2.0", "severity": "normal"})

    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(window_night() + timedelta(minutes=30))

    assert requested_versions() == []
    assert not ScheduledInstall.objects.exists()


def test_all_installs_a_normal_release_in_the_window(
    beat, registry_server, django_capture_on_commit_callbacks
):
    set_policy("all")
    publish(registry_server, {"version": "1.2.0", "severity": "normal"})

    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(window_night())

    assert requested_versions() == ["1.2.0"]


def test_manual_never_installs_by_itself(beat, registry_server, django_capture_on_commit_callbacks):
    set_policy("manual")
    publish(registry_server, {"version": "1.2.1", "severity": "critical"})

    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(window_night() + timedelta(minutes=30))

    assert requested_versions() == []


def test_the_notice_before_an_automatic_install_names_the_window_in_the_install_s_time_zone(
    beat, registry_server, announced, django_capture_on_commit_callbacks
):
    from updates import notices

    set_policy("security", start=time(3, 0))
    publish(registry_server, {"version": "1.2.1", "severity": "security"})
    with django_capture_on_commit_callbacks(execute=True):
        beat.run_until(window_night() - timedelta(minutes=20))

    [event] = announced
    notice = notices.install_scheduled_notice("1.2.1", event["scheduled_for"].isoformat())
    assert notice is not None
    assert notice.kind == NoticeKind.INSTALL_SCHEDULED
    day = window_night().strftime("%Y-%m-%d")
    assert notice.subject.endswith(
        f"1.2.1 will be installed on Sunday {day} 03:00 CEST — cancel or reschedule"
    )
    assert "cancel or reschedule" in notice.text
