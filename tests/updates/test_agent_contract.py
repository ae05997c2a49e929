"""The host agent's own HTTP client talks to the backend's agent API over real HTTP."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from testing.factories import make_run
from updates.models import AgentHeartbeat

backend = pytest.importorskip("host_agent.backend")
errors = pytest.importorskip("host_agent.errors")

pytestmark = pytest.mark.django_db(transaction=True)


def ticking_clock() -> Callable[[], float]:
    """Now, one second later at each call: the agent sends a batch again only after a retry
    delay, so with a new timestamp (the same signed bytes again would be a replay, SPEC §6)."""
    ticks = itertools.count()
    start = time.time()
    return lambda: start + next(ticks)


def test_the_agents_client_reports_a_run_and_heartbeats(live_server):
    run = make_run()
    client = backend.BackendClient(live_server.url, settings.OPENTRACE_AGENT_SECRET, clock=ticking_clock())
    beat = client.post(
        backend.HEARTBEAT_PATH,
        {
            "agent_id": "host-1",
            "agent_version": "1",
            "deployed_version": "1.1.5",
            "busy": True,
            "run_id": str(run.pk),
        },
    )
    assert beat == {"accepted": 1, "duplicates": 0}
    assert AgentHeartbeat.status().online
    started = timezone.now()
    events = [
        {"seq": 1, "kind": "run", "state": "running", "at": started.isoformat()},
        {
            "seq": 2,
            "kind": "log",
            "step": "preflight",
            "lines": ["é ok"],
            "at": (started + timedelta(seconds=1)).isoformat(),
        },
    ]
    assert client.post(backend.EVENTS_PATH, {"run_id": str(run.pk), "events": events}) == {
        "accepted": 2,
        "duplicates": 0,
    }
    assert client.post(backend.EVENTS_PATH, {"run_id": str(run.pk), "events": events}) == {
        "accepted": 0,
        "duplicates": 2,
    }
    run.refresh_from_db()
    assert run.status == "running"
    assert run.log_lines() == ["é ok"]


def test_a_refused_transition_is_a_permanent_delivery_error_for_the_agent(live_server):
    run = make_run()
    client = backend.BackendClient(live_server.url, settings.OPENTRACE_AGENT_SECRET)
    with pytest.raises(errors.DeliveryError) as refused:
        client.post(
            backend.EVENTS_PATH,
            {"run_id": str(run.pk), "events": [{"seq": 1, "kind": "run", "state": "succeeded"}]},
        )
    assert refused.value.permanent is True
    assert "409" in str(refused.value)


def test_a_wrong_secret_is_a_transient_delivery_error(live_server):
    client = backend.BackendClient(live_server.url, "w" * 48)
    with pytest.raises(errors.DeliveryError) as refused:
        client.post(backend.HEARTBEAT_PATH, {"agent_id": "host-1"})
    assert refused.value.permanent is False
    assert AgentHeartbeat.objects.count() == 0
