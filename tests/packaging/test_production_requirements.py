"""requirements.txt is what the production image installs: pinned, and complete on its own.

The slow test installs it into a fresh venv from PyPI (as the Dockerfile does:
wheels only) and starts Django with production settings there, proving that neither the
embedded engine (chdb) nor a test tool is needed at run time.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.packaging.compose import ROOT


def requirement_names(path: Path) -> dict[str, str]:
    """{normalised name: specifier} of a requirements file, `-r` includes left out."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[a-z,]+\])?(.*)", line)
        assert match, f"{path.name}: cannot read {line!r}"
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return pins


PRODUCTION = requirement_names(ROOT / "requirements.txt")
EMBEDDED = requirement_names(ROOT / "requirements-embedded.txt")
DEV = requirement_names(ROOT / "requirements-dev.txt")


def test_every_production_requirement_is_pinned():
    assert PRODUCTION
    for name, spec in PRODUCTION.items():
        assert re.fullmatch(r"==[0-9][0-9A-Za-z.+-]*", spec), f"{name} is not pinned: {spec!r}"


def test_no_embedded_or_test_package_is_a_production_requirement():
    assert "chdb-core" in EMBEDDED
    assert {"pytest", "ruff"} <= set(DEV)
    assert not set(PRODUCTION) & set(EMBEDDED)
    assert not set(PRODUCTION) & set(DEV)


def test_the_image_serves_with_gunicorn_and_whitenoise():
    assert {"gunicorn", "whitenoise", "psycopg", "redis", "clickhouse-connect"} <= set(PRODUCTION)


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_production_requirements_install_and_run_without_test_or_embedded_packages(tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable (offline): cannot install requirements.txt into a fresh venv")
    env_dir = tmp_path / "venv"
    # No pip inside the new venv (ensurepip is slow): this interpreter's pip installs into it.
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-compile"]
    install = subprocess.run(
        [*pip, "--disable-pip-version-check", "--only-binary=:all:", "-r", str(ROOT / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    imports = subprocess.run(
        [
            python,
            "-c",
            "import django, celery, kombu, redis, psycopg, clickhouse_connect, cryptography, "
            "environ, gunicorn, whitenoise, requests, packaging, apprise; psycopg.pq.version()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert imports.returncode == 0, imports.stderr
    # PyYAML is not probed: apprise (the chat notices) needs it in production too.
    for absent in ("chdb", "pytest", "pytest_django", "hypothesis", "ruff", "aiosmtpd"):
        probe = subprocess.run(
            [python, "-c", f"import {absent}"], capture_output=True, timeout=60, check=False
        )
        assert probe.returncode != 0, f"{absent} is importable in the production venv"

    # Django starts with production settings (DEBUG off, a ClickHouse server URL) and
    # passes its system checks: nothing at import time needs the packages left out.
    data_dir = tmp_path / "data"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DEBUG": "false",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "localhost",
        "OPENTRACE_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'check.sqlite3'}",
        "CLICKHOUSE_URL": "http://opentrace:secret@127.0.0.1:9/opentrace",
        "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    check = subprocess.run(
        [python, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr[-3000:]
