"""Shared steps of the update tests: the backend's update settings, a release offered, and
for the policy tests a registry document published "now" by the clock the test moves, a
heartbeat stamped by it, and DST transitions found from today (never a date written in the
test: they pass whatever day they run)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from testing.registry_server import full_document
from updates.checking import run_check
from updates.models import AgentHeartbeat, RegistryCheck, RegistryState, UpdatePolicy

BERLIN = "Europe/Berlin"


def update_defaults(settings: Any, updates_dir: Path) -> None:
    """Unsigned, on 1.1.5, stable channel, with its own updates dir (`updates_dir`)."""
    settings.OPENTRACE_REGISTRY_KEYS = {}
    settings.OPENTRACE_VERSION = "1.1.5"
    settings.OPENTRACE_CHANNEL = "stable"
    settings.OPENTRACE_UPDATES_DIR = updates_dir


def offer(registry_server: Any) -> RegistryState:
    """The registry offers 1.2.0 (pinned to a commit) and a check has recorded it."""
    registry_server.serve_json(
        "/version.json",
        full_document(
            {"version": "1.2.0", "severity": "security", "notes": "Fixes", "git_commit": "b" * 40},
            meta_version=7,
        ),
    )
    check = run_check(RegistryCheck.Trigger.SCHEDULED)
    assert check.outcome == "ok", check.error
    return RegistryState.load()


def transitions(zone: str, *, after: date | None = None) -> tuple[date, date]:
    """The next local days on which `zone` moves its clocks forward and back."""
    tz = ZoneInfo(zone)
    day = after or datetime.now(UTC).date()
    forward = back = None
    while forward is None or back is None:
        before = datetime.combine(day, time(0), tz).utcoffset()
        later = datetime.combine(day + timedelta(days=1), time(0), tz).utcoffset()
        assert before is not None
        assert later is not None
        if later > before and forward is None:
            forward = day
        if later < before and back is None:
            back = day
        day += timedelta(days=1)
    return forward, back


def set_policy(mode: str, *, days: list[int] | None = None, start: time = time(3, 0), minutes: int = 60,
               zone: str = BERLIN) -> UpdatePolicy:  # fmt: skip
    policy = UpdatePolicy.load()
    policy.mode = mode
    policy.window_days = list(range(7)) if days is None else days
    policy.window_start = start
    policy.window_minutes = minutes
    policy.time_zone = zone
    policy.full_clean()
    policy.save()
    return policy


def publish(registry_server: Any, *releases: dict[str, Any], meta_version: int = 1) -> RegistryState:
    """The registry serves `releases` (expiring in 30 days of the test's clock); a check records them."""
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()
    registry_server.serve_json(
        "/version.json", full_document(*releases, meta_version=meta_version, expires=expires)
    )
    check = run_check(RegistryCheck.Trigger.SCHEDULED)
    assert check.outcome == "ok", check.error
    return RegistryState.load()


def heartbeat() -> AgentHeartbeat:
    """The host agent reports in (stamped now by the test's clock)."""
    return AgentHeartbeat.record(
        agent_id="docker-host-1",
        agent_version="1.0",
        deployed_version="1.1.5",
        busy=False,
        run_id=None,
        reported_at=None,
    )
