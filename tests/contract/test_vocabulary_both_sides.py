"""Step names, step and run states, event kinds (SPEC §6, §7): what the agent sends, the backend takes.

A real update that fails at `migrate` and rolls back makes the agent send every kind of
event and nearly every state; each one must be in `contract.events`' vocabulary and pass the
backend's own event validation.
"""

from __future__ import annotations

import pytest

from contract import events
from host_agent import steps as agent_steps
from testing.agent import run_agent, trigger_fields, write_trigger
from updates.agent_api import BadRequest, parse_event


def test_the_agent_and_the_backend_name_the_steps_of_the_contract():
    # The agent still runs `deploy` before `migrate` (the zero-downtime issue swaps them);
    # the names are the same everywhere.
    assert set(agent_steps.STEPS) == set(events.STEPS)
    for step in events.STEP_NAMES:
        assert parse_event({"seq": 1, "kind": "step", "step": step, "state": "started"}, 0).step == step
    with pytest.raises(BadRequest, match="step must be one of"):
        parse_event({"seq": 1, "kind": "step", "step": "reboot", "state": "started"}, 0)


def test_every_event_of_a_rolled_back_update_fits_the_contract_and_the_backend_takes_it(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, FAKE_FAIL="migrate:1.2.0")

    assert done.returncode == 1, done.stderr
    sent = backend.run_events(run_id)
    assert {e["kind"] for e in sent} == set(events.EVENT_KINDS)
    for position, event in enumerate(sent):
        assert event["kind"] in events.EVENT_KINDS
        if "step" in event:
            assert event["step"] in events.STEP_NAMES
        if event["kind"] == "step":
            assert event["state"] in events.STEP_STATES
        if event["kind"] == "run":
            assert event["state"] in events.RUN_STATES
        parse_event({k: v for k, v in event.items() if k != "run_id"}, position)
    assert sent[-1]["state"] == "rolled_back"
