"""Agent configuration: SPEC §8 variables, flags win, malformed values name the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from host_agent.config import load_config
from host_agent.errors import ConfigError
from testing.agent import AGENT_ROOT, SECRET, agent_env, run_agent, trigger_fields, write_trigger

NO_FLAGS: dict[str, object] = {}


def test_flags_win_over_the_environment(tmp_path):
    env = {
        "OPENTRACE_PROJECT_DIR": str(tmp_path),
        "OPENTRACE_BACKEND_URL": "http://127.0.0.1:9999",
        "OPENTRACE_AGENT_PRESET": "compose",
        "OPENTRACE_GIT_REMOTE": "upstream",
        "OPENTRACE_AGENT_SECRET": SECRET,
    }
    config = load_config({"backend_url": "http://127.0.0.1:8001", "preset": "local", "remote": "mirror"}, env)

    assert config.backend_url == "http://127.0.0.1:8001"
    assert config.preset == "local"
    assert config.remote == "mirror"
    assert config.project_dir == tmp_path
    assert config.data_dir == tmp_path / "data"


def test_the_defaults_follow_the_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "secrets").mkdir(parents=True)
    (tmp_path / "data" / "secrets" / "agent_secret").write_text("generated-by-the-backend\n")

    config = load_config(NO_FLAGS, {})

    assert config.project_dir == tmp_path
    assert config.backend_url == "http://127.0.0.1:8000"
    assert config.preset == "compose"
    assert config.remote == "origin"
    assert config.secret == "generated-by-the-backend"
    assert config.registry_keys == {}


def test_the_secret_comes_from_dot_env_when_the_environment_has_none(tmp_path):
    (tmp_path / ".env").write_text("# written by install.sh\nOPENTRACE_AGENT_SECRET='from-dot-env'\n")
    assert load_config({"project_dir": str(tmp_path)}, {}).secret == "from-dot-env"


def test_the_secret_file_flag_wins(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-flag\n")
    config = load_config(
        {"project_dir": str(tmp_path), "secret_file": str(secret_file)}, {"OPENTRACE_AGENT_SECRET": SECRET}
    )
    assert config.secret == "from-the-flag"


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        ({"preset": "kubernetes"}, {}, "OPENTRACE_AGENT_PRESET"),
        ({}, {"OPENTRACE_BACKEND_URL": "ftp://example.com"}, "OPENTRACE_BACKEND_URL"),
        ({}, {"OPENTRACE_REGISTRY_KEYS": "k1:not-base64!"}, "OPENTRACE_REGISTRY_KEYS"),
        ({}, {"OPENTRACE_REGISTRY_KEYS": "k1:AAAA"}, "OPENTRACE_REGISTRY_KEYS"),
        ({}, {"OPENTRACE_GIT_REMOTE": "--upload-pack=x"}, "OPENTRACE_GIT_REMOTE"),
        ({}, {"OPENTRACE_BACKUP_RETENTION": "many"}, "OPENTRACE_BACKUP_RETENTION"),
        ({"secret_file": "/nonexistent/secret"}, {}, "--secret-file"),
    ],
)
def test_a_malformed_value_is_an_error_naming_it(tmp_path, flags, env, named):
    with pytest.raises(ConfigError, match=named):
        load_config({"project_dir": str(tmp_path), **flags}, {"OPENTRACE_AGENT_SECRET": SECRET, **env})


def test_no_secret_anywhere_is_a_clear_error_with_exit_code_2(tmp_path):
    env = {k: v for k, v in agent_env().items() if k != "OPENTRACE_AGENT_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "host_agent", "once", "--project-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "OPENTRACE_AGENT_SECRET" in done.stderr


def test_status_prints_the_agent_state_as_json(project, backend):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "host_agent",
            "status",
            "--project-dir",
            str(project.checkout),
            "--data-dir",
            str(project.data_dir),
            "--backend-url",
            backend.url,
            "--registry-url",
            f"{backend.url}/version.json",
        ],
        env=agent_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    state = json.loads(done.stdout)
    assert state["deployed_version"] == "1.1.5"
    assert state["agent_running"] is False
    assert state["current_run"] is None
    assert state["outbox_pending"] == 0


@pytest.mark.parametrize("package", ["cryptography", "packaging"])
def test_a_python_without_the_agents_requirements_is_a_clear_error_with_exit_code_2(
    project, backend, tmp_path, package
):
    # A package of that name that fails to import, first on the path: as if it were not installed.
    blocked = tmp_path / "blocked" / package
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        f'raise ModuleNotFoundError("No module named {package}", name="{package}")\n'
    )
    write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, PYTHONPATH=f"{blocked.parent}{os.pathsep}{AGENT_ROOT}")

    assert done.returncode == 2
    assert f"no {package!r} package" in done.stderr
    assert "requirements-agent.txt" in done.stderr
    assert "Traceback" not in done.stderr
    assert (project.updates / "trigger").exists()  # left for an agent that can read it
