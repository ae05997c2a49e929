"""Helpers for the packaging tests: the repository's packaging files and the names they use."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.prod.yml"
TEST_OVERRIDE = ROOT / "tests" / "containers" / "docker-compose.test.yml"
ENV_EXAMPLE = ROOT / ".env.example"

APP_SERVICES = ("web", "worker", "beat", "flusher")
BACKING_SERVICES = ("postgres", "redis", "clickhouse")
PROXY_SERVICES = ("proxy",)

# Names in .env that OpenTrace's settings do not read: compose's own, the service passwords
# the compose file builds URLs from, the image/user/port knobs, and the host agent's.
COMPOSE_ONLY_NAMES = {
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_FILE",
    "OPENTRACE_IMAGE_TAG",
    "OPENTRACE_UID",
    "OPENTRACE_GID",
    "OPENTRACE_HTTP_BIND",
    "OPENTRACE_HTTP_PORT",
    "POSTGRES_PASSWORD",
    "CLICKHOUSE_PASSWORD",
    "OPENTRACE_BACKEND_URL",  # the host agent's (SPEC §8)
    "WEB_CONCURRENCY",  # gunicorn's
}


def settings_variable_names() -> set[str]:
    """Every environment variable opentrace/config.py reads.

    Each is the first argument of a call there (`r.str("DEBUG", ...)`, `_database("DATABASE_URL",
    ...)`, `ConfigError("SECRET_KEY", ...)`), so the names come from the code, not a copy.
    """
    tree = ast.parse((ROOT / "opentrace" / "config.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", first.value)
            ):
                names.add(first.value)
    return names


def env_file_names(text: str) -> list[str]:
    """KEY names of a .env text, commented-out examples (`# KEY=...`) included."""
    return re.findall(r"^(?:# ?)?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)


def parse_env(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def example_env_text() -> str:
    """.env.example with its placeholders replaced by valid values."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    replacements = {
        "SECRET_KEY": "s" * 50,
        "OPENTRACE_AGENT_SECRET": "a" * 48,
        "OPENTRACE_SECRETS_KEY": "A" * 43 + "=",
        "POSTGRES_PASSWORD": "pg-password-1",
        "CLICKHOUSE_PASSWORD": "ch-password-1",
    }
    for key, value in replacements.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)
    assert not any("CHANGE-ME" in value for value in parse_env(text).values())
    return text


def docker_compose() -> str | None:
    return shutil.which("docker-compose")


def clean_env(**extra: str) -> dict[str, str]:
    """An environment without the caller's compose or OpenTrace variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMPOSE_", "OPENTRACE_", "DOCKER_", "POSTGRES_", "CLICKHOUSE_"))
    }
    env.update(extra)
    return env


def make_project(directory: Path, env_text: str | None) -> Path:
    """A project folder as compose sees it: the compose files, the image contexts, `.env`."""
    shutil.copy(COMPOSE_FILE, directory / "docker-compose.prod.yml")
    shutil.copy(ROOT / "Dockerfile", directory / "Dockerfile")
    shutil.copytree(ROOT / "tests" / "containers", directory / "tests" / "containers")
    if env_text is not None:
        (directory / ".env").write_text(env_text, encoding="utf-8")
    return directory


def compose_config(
    project: Path, *files: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    executable = docker_compose()
    assert executable is not None
    argv = [executable, "-f", "docker-compose.prod.yml"]
    for extra in files:
        argv += ["-f", str(extra)]
    return subprocess.run(
        [*argv, "config"],
        cwd=project,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rendered_config(project: Path, *files: Path, env: dict[str, str] | None = None) -> dict:
    result = compose_config(project, *files, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)
