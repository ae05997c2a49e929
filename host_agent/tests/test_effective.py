"""Commands run by hand (`status`, `backup`, `restore_all.py`) work with the running agent's
preset, not the default `compose` (issue 19, point 16): the preset asked for wins, then the
running agent's record, then a `make run` supervisor serving the data dir."""

from __future__ import annotations

import json

from host_agent import effective
from host_agent.config import load_config
from testing.agent import SECRET

ENV = {"OPENTRACE_AGENT_SECRET": SECRET}


def config_for(tmp_path, **flags: str):  # type: ignore[no-untyped-def]
    return load_config({"project_dir": str(tmp_path), **flags}, ENV)


def test_without_a_running_agent_or_make_run_the_default_stands(tmp_path):
    config = config_for(tmp_path)
    assert effective.preset_in_use(config, {}, ENV) == "compose"


def test_the_running_agents_recorded_preset_is_used(tmp_path):
    running = config_for(tmp_path, preset="local", backend_url="http://127.0.0.1:8123")
    running.state_dir.mkdir(parents=True)
    effective.record(running)

    by_hand = config_for(tmp_path)
    assert effective.preset_in_use(by_hand, {}, ENV) == "local"


def test_a_make_run_supervisor_means_local(tmp_path):
    config = config_for(tmp_path)
    (config.data_dir / "run").mkdir(parents=True)
    (config.data_dir / "run" / "supervisor.pid").write_text("4242\n")
    assert effective.preset_in_use(config, {}, ENV) == "local"


def test_the_preset_asked_for_wins(tmp_path):
    running = config_for(tmp_path, preset="local")
    running.state_dir.mkdir(parents=True)
    effective.record(running)

    asked = config_for(tmp_path, preset="compose")
    assert effective.preset_in_use(asked, {"preset": "compose"}, ENV) == "compose"
    from_env = load_config({"project_dir": str(tmp_path)}, {**ENV, "OPENTRACE_AGENT_PRESET": "compose"})
    assert effective.preset_in_use(from_env, {}, {"OPENTRACE_AGENT_PRESET": "compose"}) == "compose"


def test_a_record_that_does_not_hold_up_is_ignored(tmp_path):
    config = config_for(tmp_path)
    config.state_dir.mkdir(parents=True)
    bad = {"pid": 1, "preset": "podman", "backend_url": "http://127.0.0.1:8000", "project_dir": "/x",
           "data_dir": "/x/data", "remote": "origin"}  # fmt: skip
    (config.state_dir / effective.FILE).write_text(json.dumps(bad))
    assert effective.read(config.state_dir) is None
    assert effective.preset_in_use(config, {}, ENV) == "compose"


def test_status_of_a_stopped_agent_says_how_it_last_ran_here(tmp_path, capsys):
    from host_agent.cli import main

    ran = config_for(tmp_path, preset="local", backend_url="http://127.0.0.1:8123")
    ran.state_dir.mkdir(parents=True)
    effective.record(ran)  # what `run` wrote when it started; it stays after it stopped

    assert main(["status", "--project-dir", str(tmp_path)], ENV) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["agent_running"] is False
    assert (state["preset"], state["backend_url"]) == ("local", "http://127.0.0.1:8123")
    assert state["configuration"].startswith("the last agent's here")

    # Asked for a preset, the command shows its own configuration.
    assert main(["status", "--project-dir", str(tmp_path), "--preset", "compose"], ENV) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["preset"] == "compose"
    assert state["configuration"].startswith("this command's")
