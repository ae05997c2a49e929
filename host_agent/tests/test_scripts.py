"""`updater.sh` and the systemd unit: lint-clean, and they start the real agent."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from testing.agent import AGENT_ROOT, agent_argv, agent_env, trigger_fields, write_trigger

UPDATER = AGENT_ROOT / "updater.sh"
UNIT = AGENT_ROOT / "deploy" / "opentrace-agent.service"


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="needs shellcheck (apt-get install shellcheck)"
)
def test_updater_sh_passes_shellcheck():
    done = subprocess.run(["shellcheck", str(UPDATER)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_updater_sh_runs_the_agent(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))
    argv = agent_argv(project, backend, "once")

    done = subprocess.run(
        [str(UPDATER), *argv],
        # The agent's Python needs requirements-agent.txt; the test's own Python has it.
        env=agent_env(
            OPENTRACE_PROJECT_DIR=str(project.checkout), OPENTRACE_AGENT_HOST_PYTHON=sys.executable
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"


def test_updater_sh_refuses_a_python_without_the_agents_requirements(project, backend, tmp_path):
    # A Python that is new enough but has neither packaging nor cryptography (SPEC §8: exit 2,
    # misconfigured), before the agent touches anything.
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'packaging'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = subprocess.run(
        [str(UPDATER), *agent_argv(project, backend, "once")],
        env=agent_env(OPENTRACE_PROJECT_DIR=str(project.checkout), OPENTRACE_AGENT_HOST_PYTHON=str(bare)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "packaging and cryptography" in done.stderr
    assert "requirements-agent.txt" in done.stderr
    assert (project.updates / "trigger").exists()  # left for an agent that can read it
    assert backend.run_events(run_id) == []


def test_the_systemd_unit_starts_updater_sh_and_lets_a_step_finish_on_stop():
    unit = UNIT.read_text()
    assert "ExecStart=@PROJECT_DIR@/updater.sh run" in unit
    assert "EnvironmentFile=-@PROJECT_DIR@/.env" in unit
    assert "Restart=always" in unit
    assert "KillSignal=SIGTERM" in unit
    assert "TimeoutStopSec=900" in unit
