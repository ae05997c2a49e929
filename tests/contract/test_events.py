"""`contract.events`: the names of SPEC §6 and §7, in the SPEC's order, matching their types."""

from __future__ import annotations

from typing import get_args

from contract import events


def test_the_steps_are_the_specs_in_its_order_then_rollback():
    assert events.STEPS == (
        "preflight",
        "backup",
        "fetch",
        "build",
        "migrate",
        "deploy",
        "healthcheck",
    )
    assert (*events.STEPS, "rollback") == events.STEP_NAMES
    assert set(get_args(events.StepName)) == set(events.STEP_NAMES)


def test_the_states_and_kinds_are_the_specs():
    assert (
        set(events.STEP_STATES)
        == set(get_args(events.StepState))
        == {"started", "succeeded", "failed", "skipped"}
    )
    assert set(events.RUN_STATES) == set(get_args(events.RunState))
    assert events.RUN_STATES == ("running", "succeeded", "failed", "rolled_back")
    assert set(events.TERMINAL_RUN_STATES) == set(events.RUN_STATES) - {"running"}
    assert set(events.EVENT_KINDS) == set(get_args(events.EventKind)) == {"step", "log", "run"}


def test_the_trigger_shape_has_exactly_the_fields_of_the_trigger_file():
    from contract import trigger

    assert tuple(events.TriggerFile.__annotations__) == trigger.FIELDS
    assert set(events.UnsignedTrigger.__annotations__) == set(trigger.FIELDS) - {"signature"}


def test_the_bodies_have_the_specs_fields():
    assert set(events.HeartbeatBody.__annotations__) == {
        "agent_id",
        "agent_version",
        "deployed_version",
        "busy",
        "run_id",
        "at",
    }
    assert set(events.EventsBody.__annotations__) == {"run_id", "events"}
    assert events.Event.__required_keys__ == {"seq", "kind", "at"}
    assert events.Event.__optional_keys__ == {"step", "state", "message", "lines"}
