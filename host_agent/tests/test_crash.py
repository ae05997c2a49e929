"""SIGKILL at every step boundary, then a restart: every run ends, no event lost or doubled,
no trigger executed twice (SPEC §8 crash safety)."""

from __future__ import annotations

import signal

import pytest

from testing.agent import run_agent, trigger_fields, write_trigger

BEFORE_MIGRATE = ["claimed", "preflight", "backup", "fetch", "build"]
# Killed as `migrate` starts: the journal says it began, and the agent cannot know how far it
# got, so it takes the safe side and rolls back (reverting to the state saved before it).
FROM_MIGRATE = ["migrate", "deploy", "healthcheck"]


def assert_clean_history(backend, run_id: str) -> None:
    seqs = backend.seqs(run_id)
    assert seqs == list(range(1, len(seqs) + 1)), "events lost, doubled or out of order"
    terminal = [e for e in backend.run_events(run_id) if e["kind"] == "run" and e["state"] != "running"]
    assert len(terminal) == 1


@pytest.mark.parametrize("boundary", BEFORE_MIGRATE)
def test_a_kill_before_migrate_ends_the_run_failed_on_restart(project, backend, boundary):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    killed = run_agent(project, backend, OPENTRACE_AGENT_CRASH_AT=boundary)
    assert killed.returncode == -signal.SIGKILL
    restarted = run_agent(project, backend)

    assert restarted.returncode == 1, restarted.stderr
    assert backend.final_state(run_id) == "failed"
    assert_clean_history(backend, run_id)
    assert project.head() == project.commits["1.1.5"]
    assert project.served() == "1.1.5"
    assert not any(line.split()[0] == "migrate" for line in project.manage_log())
    # Nothing is left to run a second time.
    assert run_agent(project, backend).returncode == 0
    assert len(backend.run_events(run_id)) == len(backend.seqs(run_id))


@pytest.mark.parametrize("boundary", FROM_MIGRATE)
def test_a_kill_from_migrate_on_rolls_back_on_restart(project, backend, boundary):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    assert run_agent(project, backend, OPENTRACE_AGENT_CRASH_AT=boundary).returncode == -signal.SIGKILL
    restarted = run_agent(project, backend)

    assert restarted.returncode == 1, restarted.stderr
    assert backend.final_state(run_id) == "rolled_back"
    assert_clean_history(backend, run_id)
    assert project.served() == "1.1.5"
    assert project.head() == project.commits["1.1.5"]
    assert project.db_rows() == [(1, "written before the update")]


def test_a_kill_after_the_last_step_completes_the_run_as_succeeded(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    assert run_agent(project, backend, OPENTRACE_AGENT_CRASH_AT="finish").returncode == -signal.SIGKILL
    restarted = run_agent(project, backend)

    assert restarted.returncode == 0, restarted.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert_clean_history(backend, run_id)
    assert project.served() == "1.2.0"
    assert [line for line in project.manage_log() if line.split()[0] == "migrate"] == ["migrate --noinput"]
