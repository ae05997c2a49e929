"""`manage.py` reads the install's `.env` (issue 19, point 17): a bare shell checks the registry
the install is configured for, not the default one; the real environment still wins."""

from __future__ import annotations

import json

import pytest

from testing.helpers import clean_env, manage
from testing.registry_server import full_document, start_registry_server

pytestmark = pytest.mark.slow


@pytest.fixture
def registry():  # type: ignore[no-untyped-def]
    server = start_registry_server()
    server.serve_json("/version.json", full_document({"version": "1.2.0"}))
    server.serve_json("/other.json", full_document({"version": "1.3.0"}))
    yield server
    server.server.shutdown()
    server.server.server_close()


def bare_shell(tmp_path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in clean_env().items() if not k.startswith("OPENTRACE_")}
    return {**env, "OPENTRACE_ENV_FILE": str(tmp_path / ".env"), **extra}


def test_check_updates_in_a_bare_shell_uses_the_installs_env_file(tmp_path, registry):
    (tmp_path / ".env").write_text(
        f"OPENTRACE_DATA_DIR={tmp_path / 'data'}\nOPENTRACE_REGISTRY_URL={registry.url('/version.json')}\n"
    )
    done = manage("migrate", "--noinput", env=bare_shell(tmp_path))
    assert done.returncode == 0, done.stderr
    done = manage("check_updates", "--json", env=bare_shell(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["latest"] == "1.2.0", result
    assert (tmp_path / "data" / "opentrace.sqlite3").exists()  # the .env's data dir

    # A variable set in the environment wins over the file.
    env = bare_shell(tmp_path, OPENTRACE_REGISTRY_URL=registry.url("/other.json"))
    result = json.loads(manage("check_updates", "--json", env=env).stdout)
    assert result["latest"] == "1.3.0", result
