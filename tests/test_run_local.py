"""`make run`'s runner end to end: it prepares the data dir, serves /healthz and the admin, stops cleanly."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.helpers import ROOT, clean_env, free_port

pytestmark = pytest.mark.slow


def wait_for_health(base: str, proc: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the runner exited early"
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
            time.sleep(0.5)
    raise AssertionError(f"/healthz never answered 200: {last}")


def test_the_local_runner_serves_health_and_the_admin_then_stops(tmp_path):
    port = free_port()
    env = clean_env(
        OPENTRACE_DATA_DIR=str(tmp_path),
        OPENTRACE_PORT=str(port),
        OPENTRACE_RUN_AGENT="0",
        PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "runner.log", "w+")  # noqa: SIM115 - read after the process ends
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_for_health(base, proc)
        assert health["status"] == "ok"
        assert set(health["checks"].values()) == {"ok"}

        password = (tmp_path / "secrets" / "admin_password").read_text().strip()
        log.seek(0)
        assert f"password {password}" in log.read()

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{base}/admin/login/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": "admin", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
        ).encode()
        request = urllib.request.Request(
            f"{base}/admin/login/", data=form, headers={"Referer": f"{base}/admin/"}
        )
        landing = opener.open(request, timeout=10)
        assert landing.geturl().endswith("/admin/")
        assert "Log out" in landing.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not (tmp_path / "run" / "supervisor.pid").exists()


def test_ensure_admin_never_invents_a_password_for_an_existing_account(tmp_path):
    from tests.helpers import manage

    env = clean_env(OPENTRACE_DATA_DIR=str(tmp_path))
    assert manage("migrate", "--noinput", env=env).returncode == 0
    created = manage("ensure_admin", env={**env, "OPENTRACE_ADMIN_PASSWORD": "chosen-by-the-operator-1"})
    assert "Created admin user 'admin' with password chosen-by-the-operator-1" in created.stdout

    again = manage("ensure_admin", env=env)
    assert again.returncode == 0
    assert "exists; its password is unchanged" in again.stdout
    assert "password " not in again.stdout.replace("its password is unchanged", "")
    assert not (tmp_path / "secrets" / "admin_password").exists()


def test_mails_link_to_the_port_the_runner_serves_on():
    """Issue 19, point 15: `OPENTRACE_PORT=8100 make run` must not put :8000 in mails."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import run_local
    finally:
        sys.path.pop(0)
    assert run_local.base_url({"OPENTRACE_PORT": "8100"}) == "http://127.0.0.1:8100"
    every_interface = {"OPENTRACE_PORT": "8100", "OPENTRACE_HOST": "0.0.0.0"}  # noqa: S104
    assert run_local.base_url(every_interface) == "http://127.0.0.1:8100"
    assert run_local.base_url({"OPENTRACE_HOST": "::1", "OPENTRACE_PORT": "9000"}) == "http://[::1]:9000"
    explicit = {"OPENTRACE_PORT": "8100", "OPENTRACE_BASE_URL": "https://analytics.example.com"}
    assert run_local.base_url(explicit) == "https://analytics.example.com"
