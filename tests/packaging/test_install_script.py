"""install.sh, run for real against fake docker/docker-compose/systemctl (see fake_tools.py).

The fakes record every command; a real HTTP server on 127.0.0.1 plays the web app's
/healthz. The tests assert the exact commands, the `.env` written (content, mode,
secrets that the settings accept), and that a second run changes nothing.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from opentrace.config import load_config
from tests.packaging.compose import parse_env
from tests.packaging.fake_tools import INSTALL_SH, Sandbox, make_sandbox

UNIT = "opentrace-agent.service"
ENV_KEYS = [
    "COMPOSE_PROJECT_NAME",
    "OPENTRACE_IMAGE_TAG",
    "OPENTRACE_UID",
    "OPENTRACE_GID",
    "OPENTRACE_HTTP_BIND",
    "OPENTRACE_HTTP_PORT",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "OPENTRACE_BASE_URL",
    "OPENTRACE_BACKEND_URL",
    "OPENTRACE_AGENT_SECRET",
    "OPENTRACE_SECRETS_KEY",
    "POSTGRES_PASSWORD",
    "CLICKHOUSE_PASSWORD",
]
ENSURE_ADMIN_SCRIPT = (
    'IFS= read -r p || true; if [ -n "$p" ]; then export OPENTRACE_ADMIN_PASSWORD="$p"; fi; '
    "exec python manage.py ensure_admin"
)


@pytest.fixture
def sandbox(tmp_path):
    yield from make_sandbox(tmp_path, health_statuses=[503, 503, 200])


@pytest.fixture
def systemd(sandbox):
    sandbox.systemd_runtime.mkdir()
    return sandbox


def install(sandbox: Sandbox, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return sandbox.run(
        "--non-interactive", "--http-port", str(sandbox.health.port), "--timeout", "20", *args, **kwargs
    )


def compose(*args: str, v2: bool = True) -> list[str]:
    return [*(["docker", "compose"] if v2 else ["docker-compose"]), "-f", "docker-compose.prod.yml", *args]


def stack_commands(v2: bool = True, user: str = "admin", email: str = "admin@localhost") -> list[list[str]]:
    return [
        compose("build", v2=v2),
        compose("up", "-d", v2=v2),
        compose("ps", "web", v2=v2),
        compose("exec", "-T", "web", "python", "manage.py", "migrate_all", v2=v2),
        compose(
            "exec",
            "-T",
            "-e",
            f"OPENTRACE_ADMIN_USER={user}",
            "-e",
            f"OPENTRACE_ADMIN_EMAIL={email}",
            "web",
            "sh",
            "-c",
            ENSURE_ADMIN_SCRIPT,
            v2=v2,
        ),
    ]


# --- the happy paths ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_install(tmp_path_factory):
    """One fresh install with systemd and compose v2, shared by the tests that only read it."""
    for box in make_sandbox(tmp_path_factory.mktemp("first-install"), health_statuses=[503, 503, 200]):
        box.systemd_runtime.mkdir()
        box.set("compose-v2")
        result = install(
            box,
            "--admin-user",
            "ops",
            "--admin-email",
            "ops@example.com",
            "--base-url",
            "https://analytics.example.com",
        )
        assert result.returncode == 0, result.stderr
        yield box, result


def test_a_first_install_builds_starts_migrates_creates_the_admin_and_enables_the_agent(first_install):
    box, result = first_install
    assert box.calls() == [
        ["docker", "compose", "version"],
        ["docker", "info"],
        *stack_commands(user="ops", email="ops@example.com"),
        ["systemctl", "daemon-reload"],
        ["systemctl", "is-enabled", "--quiet", UNIT],
        ["systemctl", "enable", "--now", UNIT],
    ]
    # Compose runs in the project dir, so it finds .env there (both compose versions).
    assert {entry["cwd"] for entry in box.entries() if "-f" in entry["argv"]} == {str(box.project)}
    assert "OpenTrace is running: https://analytics.example.com/admin/" in result.stdout


def test_the_install_waits_for_healthz_before_and_after_migrating(first_install):
    box, _ = first_install
    # 503 (the app answers, migrations pending) → migrate → 503 → 200.
    assert box.health.requests == ["/healthz", "/healthz", "/healthz"]


def test_the_agent_unit_points_at_the_install_directory(first_install):
    box, _ = first_install
    unit = (box.unit_dir / UNIT).read_text(encoding="utf-8")
    assert "@PROJECT_DIR@" not in unit
    assert f"WorkingDirectory={box.project}\n" in unit
    assert f"ExecStart={box.project}/updater.sh run\n" in unit
    assert f"EnvironmentFile=-{box.project}/.env\n" in unit
    assert "@DATA_DIR@" not in unit
    assert f"ReadWritePaths={box.project} {box.project}/data\n" in unit
    assert f"Environment=OPENTRACE_DATA_DIR={box.project}/data\n" in unit
    assert stat.S_IMODE((box.unit_dir / UNIT).stat().st_mode) == 0o644


def test_the_env_file_gets_fresh_secrets_the_settings_accept(first_install):
    box, _ = first_install
    env_file = box.env_file()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = parse_env(env_file.read_text(encoding="utf-8"))
    assert list(values) == ENV_KEYS
    assert values["DEBUG"] == "false"
    assert values["OPENTRACE_BASE_URL"] == "https://analytics.example.com"
    assert values["CSRF_TRUSTED_ORIGINS"] == "https://analytics.example.com"
    assert values["ALLOWED_HOSTS"] == "localhost,127.0.0.1,[::1],analytics.example.com"
    assert values["OPENTRACE_BACKEND_URL"] == f"http://127.0.0.1:{box.health.port}"
    assert len(base64.urlsafe_b64decode(values["OPENTRACE_SECRETS_KEY"])) == 32
    for key in ("SECRET_KEY", "OPENTRACE_AGENT_SECRET"):
        assert len(values[key]) >= 48, key
    for key in ("POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD"):
        assert len(values[key]) == 48, key
        assert values[key].isalnum(), key  # safe inside the URLs the compose file builds
    secrets = [values[key] for key in ENV_KEYS if "SECRET" in key or "PASSWORD" in key]
    assert len(set(secrets)) == len(secrets)

    # The settings start in production mode with exactly what the containers get.
    settings = load_config(
        {**values, "DATABASE_URL": f"postgres://opentrace:{values['POSTGRES_PASSWORD']}@postgres/opentrace"},
        box.root,
    )
    assert settings.debug is False
    assert settings.agent_secret == values["OPENTRACE_AGENT_SECRET"]
    assert settings.secrets_keys == [values["OPENTRACE_SECRETS_KEY"]]


def test_data_dir_is_created_for_the_app_user(first_install):
    box, _ = first_install
    data = box.project / "data"
    assert data.is_dir()
    values = parse_env(box.env_file().read_text(encoding="utf-8"))
    if os.getuid() == 0:
        assert (values["OPENTRACE_UID"], values["OPENTRACE_GID"]) == ("10001", "10001")
        assert (data.stat().st_uid, data.stat().st_gid) == (10001, 10001)
    else:
        assert values["OPENTRACE_UID"] == str(os.getuid())


def test_two_installs_get_different_secrets(first_install, sandbox):
    sandbox.set("compose-v2")
    assert install(sandbox, "--no-agent").returncode == 0
    first = parse_env(first_install[0].env_file().read_text(encoding="utf-8"))
    second = parse_env(sandbox.env_file().read_text(encoding="utf-8"))
    for key in ("SECRET_KEY", "OPENTRACE_AGENT_SECRET", "OPENTRACE_SECRETS_KEY", "POSTGRES_PASSWORD"):
        assert first[key] != second[key], key


def test_a_second_run_changes_nothing(systemd):
    systemd.set("compose-v2")
    assert install(systemd).returncode == 0
    env_before = systemd.env_file().read_bytes()
    unit_before = (systemd.unit_dir / UNIT).stat().st_mtime_ns
    systemd.clear_calls()
    time.sleep(0.01)

    result = install(systemd)

    assert result.returncode == 0, result.stderr
    assert systemd.env_file().read_bytes() == env_before
    assert stat.S_IMODE(systemd.env_file().stat().st_mode) == 0o600
    assert (systemd.unit_dir / UNIT).stat().st_mtime_ns == unit_before
    assert systemd.calls() == [
        ["docker", "compose", "version"],
        ["docker", "info"],
        *stack_commands(),
        ["systemctl", "is-enabled", "--quiet", UNIT],
        ["systemctl", "is-active", "--quiet", UNIT],
    ]
    assert "wrote" not in result.stdout
    assert "already running" in result.stdout


def test_compose_v1_is_used_when_the_v2_plugin_is_absent(sandbox):
    result = install(sandbox, "--no-agent")
    assert result.returncode == 0, result.stderr
    assert sandbox.calls() == [
        ["docker", "compose", "version"],
        ["docker-compose", "version"],
        ["docker", "info"],
        *stack_commands(v2=False),
    ]


def test_the_compose_command_and_extra_files_can_be_chosen(sandbox, tmp_path):
    sandbox.set("compose-v2")
    override = tmp_path / "override.yml"
    override.write_text("services: {}\n", encoding="utf-8")
    result = install(
        sandbox, "--no-agent", "--compose-cmd", "docker-compose", "--compose-file", str(override)
    )
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert calls[:2] == [["docker-compose", "version"], ["docker", "info"]]
    assert calls[2] == ["docker-compose", "-f", "docker-compose.prod.yml", "-f", str(override), "build"]
    assert all(call[:5] == calls[2][:5] for call in calls[2:])
    values = parse_env(sandbox.env_file().read_text(encoding="utf-8"))
    assert values["COMPOSE_FILE"] == f"docker-compose.prod.yml:{override}"


def test_a_rerun_without_flags_uses_the_compose_files_remembered_in_env(sandbox, tmp_path):
    sandbox.set("compose-v2")
    override = tmp_path / "override.yml"
    override.write_text("services: {}\n", encoding="utf-8")
    assert install(sandbox, "--no-agent", "--compose-file", str(override)).returncode == 0
    sandbox.clear_calls()
    assert install(sandbox, "--no-agent").returncode == 0
    assert compose("-f", str(override), "up", "-d") in sandbox.calls()


def test_a_compose_file_in_env_must_start_with_the_production_file(sandbox):
    sandbox.env_file().write_text("COMPOSE_FILE=evil.yml:docker-compose.prod.yml\n", encoding="utf-8")
    result = install(sandbox)
    assert result.returncode == 2
    assert "COMPOSE_FILE in .env must start with docker-compose.prod.yml" in result.stderr
    assert sandbox.calls() == []


def test_no_build_starts_the_images_that_exist(sandbox):
    sandbox.set("compose-v2")
    assert install(sandbox, "--no-agent", "--no-build").returncode == 0
    assert compose("build") not in sandbox.calls()
    assert compose("up", "-d") in sandbox.calls()


@pytest.mark.parametrize("v2", [True, False])
def test_a_second_run_after_a_rollout_runs_its_commands_in_the_web_container_that_runs(sandbox, v2):
    # After an update the agent's rollout leaves web container number 2 (number 1 is gone);
    # compose's `exec` looks for number 1 unless given --index.
    if v2:
        sandbox.set("compose-v2")
        listing = "NAME              IMAGE   STATUS\nopentrace-web-2   web     Up 3 minutes (healthy)\n"
    else:
        header = "     Name       Command   State\n" + "-" * 32
        listing = header + "\nopentrace_web_2  gunicorn  Up (healthy)\n"
    sandbox.set("ps-output", listing)
    assert install(sandbox, "--no-agent").returncode == 0
    execs = [argv for argv in sandbox.calls() if "exec" in argv]
    assert len(execs) == 2
    for argv in execs:
        assert argv[argv.index("exec") : argv.index("exec") + 4] == ["exec", "-T", "--index", "2"]


def test_a_stopped_web_container_is_not_taken_for_the_running_one(sandbox):
    sandbox.set("ps-output", "opentrace_web_3  gunicorn  Exit 137\nopentrace_web_1  gunicorn  Up (healthy)\n")
    assert install(sandbox, "--no-agent").returncode == 0
    execs = [argv for argv in sandbox.calls() if "exec" in argv]
    assert execs
    assert all("--index" not in argv for argv in execs)


def test_the_admin_password_goes_through_stdin_never_argv(sandbox, tmp_path):
    sandbox.set("compose-v2")
    password = "p a$s \"w'0rd` $(touch /tmp/pwned)"
    assert install(sandbox, "--no-agent", "--admin-password", password).returncode == 0
    (admin,) = [entry for entry in sandbox.entries() if entry["argv"][-1] == ENSURE_ADMIN_SCRIPT]
    assert admin["stdin"] == password + "\n"
    assert not any(password in " ".join(argv) for argv in sandbox.calls())

    password_file = tmp_path / "pw"
    password_file.write_text("from-a-file-1\n", encoding="utf-8")
    sandbox.clear_calls()
    assert install(sandbox, "--no-agent", "--admin-password-file", str(password_file)).returncode == 0
    (admin,) = [entry for entry in sandbox.entries() if entry["argv"][-1] == ENSURE_ADMIN_SCRIPT]
    assert admin["stdin"] == "from-a-file-1\n"


def test_without_a_password_ensure_admin_generates_one(sandbox):
    sandbox.set("compose-v2")
    assert install(sandbox, "--no-agent").returncode == 0
    (admin,) = [entry for entry in sandbox.entries() if entry["argv"][-1] == ENSURE_ADMIN_SCRIPT]
    assert admin["stdin"] == "\n"


def test_settings_come_from_the_environment_too(sandbox):
    sandbox.set("compose-v2")
    result = install(
        sandbox,
        "--no-agent",
        env={"OPENTRACE_ADMIN_USER": "envadmin", "OPENTRACE_ADMIN_PASSWORD": "from-env-1"},
    )
    assert result.returncode == 0, result.stderr
    (admin,) = [entry for entry in sandbox.entries() if entry["argv"][-1] == ENSURE_ADMIN_SCRIPT]
    assert "OPENTRACE_ADMIN_USER=envadmin" in admin["argv"]
    assert admin["stdin"] == "from-env-1\n"


# --- the agent without systemd ---------------------------------------------------------------


def test_without_systemd_the_agent_starts_in_the_background_once(sandbox):
    sandbox.set("compose-v2")
    result = install(sandbox)
    assert result.returncode == 0, result.stderr
    assert not [call for call in sandbox.calls() if call[0] == "systemctl"]
    pid = int((sandbox.agent_state / "agent.pid").read_text())
    os.kill(pid, 0)  # alive
    assert stat.S_IMODE(sandbox.agent_state.stat().st_mode) == 0o700
    assert not (sandbox.project / "data" / "run").exists()
    assert not (sandbox.project / "data" / "logs").exists()
    agent_env = _wait_for(sandbox.project / "data" / "agent-env")
    assert f"OPENTRACE_PROJECT_DIR={sandbox.project}" in agent_env
    assert f"OPENTRACE_BACKEND_URL=http://127.0.0.1:{sandbox.health.port}" in agent_env
    assert "OPENTRACE_AGENT_PRESET=compose" in agent_env

    second = install(sandbox)
    assert second.returncode == 0, second.stderr
    assert f"agent already running (pid {pid})" in second.stdout
    assert int((sandbox.agent_state / "agent.pid").read_text()) == pid


@pytest.mark.parametrize("planted", ["state dir", "pid file", "log file"])
def test_without_systemd_a_link_planted_for_the_agents_pid_or_log_is_refused(sandbox, tmp_path, planted):
    sandbox.set("compose-v2")
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    if planted == "state dir":
        sandbox.agent_state.symlink_to(tmp_path, target_is_directory=True)
    else:
        sandbox.agent_state.mkdir(mode=0o700)
        name = "agent.pid" if planted == "pid file" else "agent.log"
        (sandbox.agent_state / name).symlink_to(victim)

    result = install(sandbox)

    assert result.returncode == 1
    assert "symbolic link" in result.stderr
    assert victim.read_text() == "root's file\n"


def test_an_agent_python_without_the_agents_requirements_stops_the_install_before_anything_changes(sandbox):
    sandbox.set("compose-v2")
    bare = sandbox.root / "bare-python"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'docker'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    result = install(sandbox, env={"OPENTRACE_AGENT_HOST_PYTHON": str(bare)})
    assert result.returncode == 1
    assert "cannot import the Docker SDK, packaging and cryptography" in result.stderr
    assert not sandbox.env_file().exists()
    assert not [call for call in sandbox.calls() if call[0] in ("docker", "docker-compose")]


def test_a_python3_that_has_the_agents_requirements_is_used_as_is(sandbox):
    sandbox.set("compose-v2")
    probe = subprocess.run(
        ["python3", "-c", "import docker, packaging.version, cryptography"],
        env={"PATH": str(sandbox.bin)},
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("the host's python3 lacks requirements-agent.txt here; install.sh would make .agent-venv")
    result = install(sandbox, env={"OPENTRACE_AGENT_HOST_PYTHON": ""})
    assert result.returncode == 0, result.stderr
    assert "agent: python3 already has the Docker SDK, packaging and cryptography" in result.stdout
    assert not (sandbox.project / ".agent-venv").exists()


def test_no_agent_installs_no_agent(systemd):
    systemd.set("compose-v2")
    assert install(systemd, "--no-agent").returncode == 0
    assert not [call for call in systemd.calls() if call[0] == "systemctl"]
    assert not (systemd.unit_dir / UNIT).exists()


# --- an existing .env ------------------------------------------------------------------------


def test_an_existing_env_keeps_its_values_and_gets_only_the_missing_keys(sandbox):
    sandbox.set("compose-v2")
    original = "# my settings\nSECRET_KEY=" + "k" * 40 + "\nOPENTRACE_HTTP_PORT=" + str(sandbox.health.port)
    sandbox.env_file().write_text(original, encoding="utf-8")  # no final newline on purpose
    sandbox.env_file().chmod(0o644)

    result = install(sandbox, "--no-agent", "--http-port", "9")

    assert result.returncode == 0, result.stderr
    text = sandbox.env_file().read_text(encoding="utf-8")
    assert text.startswith(original + "\n")
    values = parse_env(text)
    assert values["SECRET_KEY"] == "k" * 40
    assert values["OPENTRACE_HTTP_PORT"] == str(sandbox.health.port)  # .env wins over the flag
    assert set(values) == set(ENV_KEYS)
    assert text.count("SECRET_KEY=") == 1
    assert stat.S_IMODE(sandbox.env_file().stat().st_mode) == 0o600


def test_a_complete_env_readable_by_others_is_tightened_and_kept(sandbox):
    sandbox.set("compose-v2")
    assert install(sandbox, "--no-agent").returncode == 0
    before = sandbox.env_file().read_bytes()
    sandbox.env_file().chmod(0o644)
    result = install(sandbox, "--no-agent")
    assert result.returncode == 0, result.stderr
    assert "tightened" in result.stdout
    assert sandbox.env_file().read_bytes() == before
    assert stat.S_IMODE(sandbox.env_file().stat().st_mode) == 0o600


def test_a_malformed_port_in_env_is_refused(sandbox):
    sandbox.env_file().write_text("OPENTRACE_HTTP_PORT=80 -v /:/host\n", encoding="utf-8")
    result = install(sandbox)
    assert result.returncode == 2
    assert "OPENTRACE_HTTP_PORT in .env" in result.stderr
    assert sandbox.calls() == []


def test_a_copied_env_example_with_placeholders_is_refused(sandbox):
    sandbox.set("compose-v2")
    shutil.copy(INSTALL_SH.parent / ".env.example", sandbox.env_file())
    before = sandbox.env_file().read_bytes()
    result = install(sandbox, "--no-agent")
    assert result.returncode == 1
    assert "SECRET_KEY" in result.stderr
    assert "CHANGE-ME" in result.stderr
    assert sandbox.env_file().read_bytes().startswith(before)
    assert not [call for call in sandbox.calls() if "up" in call]


def test_an_env_symlink_is_refused_and_its_target_untouched(sandbox, tmp_path):
    sandbox.set("compose-v2")
    target = tmp_path / "elsewhere"
    target.write_text("KEEP=1\n", encoding="utf-8")
    sandbox.env_file().symlink_to(target)
    result = install(sandbox, "--no-agent")
    assert result.returncode == 1
    assert "symbolic link" in result.stderr
    assert target.read_text(encoding="utf-8") == "KEEP=1\n"


# --- failures are loud and early -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-port", "99999"], "--http-port (or OPENTRACE_HTTP_PORT in .env) must be a port number"),
        (
            ["--http-port", "80; rm -rf /"],
            "--http-port (or OPENTRACE_HTTP_PORT in .env) must be a port number",
        ),
        (
            ["--http-bind", "0.0.0.0 -p 1"],
            "--http-bind (or OPENTRACE_HTTP_BIND in .env) must be an IP address",
        ),
        (["--admin-user", "bad user;rm"], "--admin-user may contain"),
        (["--admin-email", "not-an-email"], "--admin-email is not an email address"),
        (["--admin-email", "a@b' -e X=1"], "--admin-email is not an email address"),
        (["--base-url", "javascript:alert(1)"], "--base-url (or OPENTRACE_BASE_URL in .env) must look like"),
        (
            ["--base-url", "https://example.com/path?x"],
            "--base-url (or OPENTRACE_BASE_URL in .env) must look like",
        ),
        (["--timeout", "soon"], "--timeout must be a number"),
        (["--compose-file", "/nonexistent/override.yml"], "no such file"),
        (["--admin-password-file", "/nonexistent/pw"], "cannot read"),
        (["--frobnicate"], "unknown option: --frobnicate"),
        (["--admin-user"], "--admin-user needs a value"),
    ],
)
def test_bad_options_are_refused_before_anything_changes(sandbox, args, message):
    sandbox.set("compose-v2")
    result = install(sandbox, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert sandbox.calls() == []
    assert not sandbox.env_file().exists()
    assert not (sandbox.project / "data").exists()


def test_help_prints_the_options():
    result = subprocess.run(["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for option in (
        "--non-interactive",
        "--admin-user",
        "--admin-password-file",
        "--compose-cmd",
        "--no-agent",
    ):
        assert option in result.stdout


def test_without_compose_the_install_stops_with_what_to_install(sandbox):
    sandbox.remove_tool("docker-compose")
    result = install(sandbox)
    assert result.returncode == 1
    assert "Docker Compose is required" in result.stderr
    assert not sandbox.env_file().exists()


def test_an_unreachable_engine_stops_the_install(sandbox):
    sandbox.set("compose-v2")
    sandbox.set("info-fails")
    result = install(sandbox)
    assert result.returncode == 1
    assert "Docker engine is not reachable" in result.stderr
    assert not sandbox.env_file().exists()


@pytest.mark.parametrize("tool", ["git", "python3"])
def test_a_missing_prerequisite_is_named(sandbox, tool):
    sandbox.set("compose-v2")
    sandbox.remove_tool(tool)
    result = install(sandbox)
    assert result.returncode == 1
    assert f"{tool} is required" in result.stderr


def test_a_failing_step_stops_the_install(systemd):
    systemd.set("compose-v2")
    systemd.set("fail-on", "migrate_all")
    result = install(systemd)
    assert result.returncode == 1
    assert not [call for call in systemd.calls() if call[0] == "systemctl"]


def test_an_app_that_never_gets_healthy_fails_with_its_state_and_logs(tmp_path):
    for box in make_sandbox(tmp_path, health_statuses=[503]):
        box.set("compose-v2")
        result = install(box, "--no-agent", "--timeout", "3")
        assert result.returncode == 1
        assert "not healthy" in result.stderr
        assert compose("ps") in box.calls()
        assert compose("logs", "--tail=60", "web") in box.calls()


def test_a_project_dir_without_the_compose_file_is_refused(sandbox):
    (sandbox.project / "docker-compose.prod.yml").unlink()
    result = install(sandbox)
    assert result.returncode == 1
    assert "no docker-compose.prod.yml" in result.stderr


# --- lint ------------------------------------------------------------------------------------


def test_install_sh_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed: apt-get install -y shellcheck")
    scripts = [INSTALL_SH, *sorted(Path(INSTALL_SH.parent, "tests", "containers").rglob("*.sh"))]
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _wait_for(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(encoding="utf-8"):
            return path.read_text(encoding="utf-8")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")
