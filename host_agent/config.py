"""The agent's configuration: SPEC §8 environment variables and matching flags (flags win).

`load_config(flags, environ)` is the one place that reads them. Paths, executables and the
project's Python are plain fields so tests can point the real entry point at temporary roots.
A malformed value is a `ConfigError` naming the variable or flag, never a silent default.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from contract.keys import KeysError, parse_registry_keys
from host_agent.errors import ConfigError
from host_agent.state import default_state_dir

DEFAULT_REGISTRY_URL = "https://version.429toomanyre.quest/version.json"
PRESETS = ("compose", "local")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class AgentConfig:
    project_dir: Path
    data_dir: Path
    backend_url: str
    secret: str
    preset: str
    remote: str = "origin"
    registry_keys: dict[str, bytes] = field(default_factory=dict)
    python: str = sys.executable
    git: str = "git"
    docker: str = "docker"
    restart_command: list[str] | None = None
    healthcheck_timeout: float = 120.0
    backup_retention: int = 5
    heartbeat_interval: float = 30.0
    container_data_dir: str = "/app/data"
    # The agent's own state (SPEC §5); see host_agent/state.py for the default.
    state_dir_override: Path | None = None
    registry_url: str = DEFAULT_REGISTRY_URL
    # The environment given to the project's own commands (manage.py, pg_dump, docker).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def updates_dir(self) -> Path:
        return self.data_dir / "updates"

    @property
    def state_dir(self) -> Path:
        """The agent's own state (journal, outbox, claims, locks), out of the app's reach."""
        if self.state_dir_override is not None:
            return self.state_dir_override
        return default_state_dir(self.data_dir)

    @property
    def legacy_state_dir(self) -> Path:
        """Where installs before issue 16 kept it: inside the app's data dir."""
        return self.updates_dir / "agent"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a docker-compose style `.env`; comments and blank lines ignored."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return values
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _read_secret_file(path: Path, name: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path} ({exc.strerror})") from None
    if not value:
        raise ConfigError(f"{name}: {path} is empty")
    return value


def _number(name: str, raw: str | None, default: float, minimum: float, maximum: float) -> float:
    if raw is None or not str(raw).strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}: must be between {minimum:g} and {maximum:g}, got {value:g}")
    return value


def load_config(
    flags: Mapping[str, object], environ: Mapping[str, str], *, require_secret: bool = True
) -> AgentConfig:
    """Merge flags (argparse names, None when not given) over the environment and `.env`."""

    def pick(flag: str, variable: str) -> str | None:
        value = flags.get(flag)
        if value is not None:
            return str(value)
        return environ.get(variable) or None

    project_dir = Path(pick("project_dir", "OPENTRACE_PROJECT_DIR") or os.getcwd()).resolve()
    if not project_dir.is_dir():
        raise ConfigError(f"OPENTRACE_PROJECT_DIR / --project-dir: {project_dir} is not a directory")
    dotenv = read_env_file(project_dir / ".env")

    data_raw = pick("data_dir", "OPENTRACE_DATA_DIR") or dotenv.get("OPENTRACE_DATA_DIR") or "data"
    data_dir = Path(data_raw)
    if not data_dir.is_absolute():
        data_dir = project_dir / data_dir
    data_dir = data_dir.resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"OPENTRACE_DATA_DIR / --data-dir: {data_dir} is not a directory")

    backend_url = (pick("backend_url", "OPENTRACE_BACKEND_URL") or "http://127.0.0.1:8000").rstrip("/")
    parts = urlsplit(backend_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"OPENTRACE_BACKEND_URL / --backend-url: {backend_url!r} is not an http(s) URL")

    preset = pick("preset", "OPENTRACE_AGENT_PRESET") or "compose"
    if preset not in PRESETS:
        raise ConfigError(f"OPENTRACE_AGENT_PRESET / --preset: {preset!r} is not one of {', '.join(PRESETS)}")

    remote = pick("remote", "OPENTRACE_GIT_REMOTE") or "origin"
    if remote.startswith("-"):
        raise ConfigError(f"OPENTRACE_GIT_REMOTE / --remote: {remote!r} must not start with '-'")

    state_raw = pick("state_dir", "OPENTRACE_AGENT_STATE_DIR")
    state_dir = None
    if state_raw:
        state_dir = Path(state_raw)
        if not state_dir.is_absolute():
            raise ConfigError(
                f"OPENTRACE_AGENT_STATE_DIR / --state-dir: {state_raw!r} is not an absolute path"
            )

    registry_url = (
        pick("registry_url", "OPENTRACE_REGISTRY_URL")
        or dotenv.get("OPENTRACE_REGISTRY_URL")
        or DEFAULT_REGISTRY_URL
    )
    if urlsplit(registry_url).scheme not in {"http", "https"}:
        raise ConfigError(f"OPENTRACE_REGISTRY_URL: {registry_url[:200]!r} is not an http(s) URL")

    secret_file = flags.get("secret_file")
    generated = data_dir / "secrets" / "agent_secret"
    if secret_file is not None:
        secret = _read_secret_file(Path(str(secret_file)), "--secret-file")
    elif environ.get("OPENTRACE_AGENT_SECRET"):
        secret = environ["OPENTRACE_AGENT_SECRET"].strip()
    elif dotenv.get("OPENTRACE_AGENT_SECRET"):
        secret = dotenv["OPENTRACE_AGENT_SECRET"].strip()
    elif generated.exists():
        secret = _read_secret_file(generated, "the generated agent secret")
    elif not require_secret:
        secret = ""
    else:
        raise ConfigError(
            "OPENTRACE_AGENT_SECRET: not set, not in .env and not generated in "
            f"{generated} yet (start OpenTrace once, or pass --secret-file)"
        )

    keys_raw = environ.get("OPENTRACE_REGISTRY_KEYS") or dotenv.get("OPENTRACE_REGISTRY_KEYS")
    try:
        registry_keys = parse_registry_keys(keys_raw)
    except KeysError as exc:
        raise ConfigError(f"OPENTRACE_REGISTRY_KEYS: {exc}") from None

    python = pick("python", "OPENTRACE_AGENT_PYTHON")
    if python is None:
        venv_python = project_dir / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable

    restart_raw = pick("restart_command", "OPENTRACE_AGENT_RESTART_COMMAND")
    restart_command = shlex.split(restart_raw) if restart_raw else None

    retention = _number("OPENTRACE_BACKUP_RETENTION", environ.get("OPENTRACE_BACKUP_RETENTION"), 5, 1, 1000)
    health_timeout = _number(
        "OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT",
        environ.get("OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT"),
        120,
        1,
        3600,
    )

    # The project's commands see what the backend sees: .env, then the real environment on top.
    child_env = {**dotenv, **environ, "OPENTRACE_DATA_DIR": str(data_dir)}
    return AgentConfig(
        project_dir=project_dir,
        data_dir=data_dir,
        backend_url=backend_url,
        secret=secret,
        preset=preset,
        remote=remote,
        registry_keys=registry_keys,
        python=python,
        git=environ.get("OPENTRACE_AGENT_GIT", "git"),
        docker=environ.get("OPENTRACE_AGENT_DOCKER", "docker"),
        restart_command=restart_command,
        healthcheck_timeout=health_timeout,
        backup_retention=int(retention),
        env=child_env,
        # Decided once: the data dir's owner may change (install.sh, the agent's own chown).
        state_dir_override=state_dir or default_state_dir(data_dir),
        registry_url=registry_url,
    )
