"""`make run`'s runner end to end: it prepares the data dir, serves /healthz and the admin, stops cleanly."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from testing.helpers import ROOT, clean_env, start_local_runner, wait_for_health
from testing.prober import Prober

pytestmark = pytest.mark.slow


def test_the_local_runner_serves_health_and_the_admin_then_stops(tmp_path):
    runner = start_local_runner(tmp_path)
    proc, base, log = runner.proc, runner.url, runner.log
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
    from testing.helpers import manage

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


def gunicorn_workers(master: int) -> set[int]:
    children: set[int] = set()
    for task in (Path("/proc") / str(master) / "task").iterdir():
        children.update(int(pid) for pid in (task / "children").read_text().split())
    return children


def web_master(runner: subprocess.Popen) -> int:
    """The gunicorn master: the runner's child running gunicorn."""
    for pid in gunicorn_workers(runner.pid):
        if b"gunicorn" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
            return pid
    raise AssertionError("no gunicorn under the runner")


def test_sighup_reloads_the_web_server_without_failing_a_request(tmp_path):
    """`deploy` in local mode: new workers beside the old, a slow request on the old one completes."""
    runner = start_local_runner(tmp_path, OPENTRACE_RUN_WORKER="0", OPENTRACE_RUN_FLUSHER="0")
    proc, base, port, log = runner.proc, runner.url, runner.port, runner.log
    # A generous timeout: this asserts no refused, cut or failed request; latency is the
    # benchmark's (bench/downtime.py), and the suite may share the machine's two cores.
    probers = [
        Prober(f"{base}/healthz", 0.05, timeout=30),
        Prober(f"{base}/admin/login/", 0.05, reads_version=False, timeout=30),
    ]
    try:
        wait_for_health(base, proc)
        master = web_master(proc)
        old_workers = gunicorn_workers(master)
        for prober in probers:
            prober.thread.start()
        # A request whose body is still arriving: the agent API reads the whole body before
        # it checks the signature (which this one lacks).
        body = json.dumps({"agent_id": "slow", "padding": "x" * 200}).encode()
        slow = socket.create_connection(("127.0.0.1", port), timeout=60)
        slow.sendall(
            b"POST /api/updates/agent/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        time.sleep(1.0)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 90
        while gunicorn_workers(master) & old_workers and not (gunicorn_workers(master) - old_workers):
            assert time.monotonic() < deadline, "no new worker"
            time.sleep(0.1)
        # The new workers are up; the old one waits for the slow request before it exits.
        time.sleep(3.0)
        assert gunicorn_workers(master) & old_workers, "the old worker quit with a request in flight"
        slow.sendall(body[20:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        slow.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]  # read whole, then refused
        while gunicorn_workers(master) & old_workers:
            assert time.monotonic() < deadline, "the old worker never left"
            time.sleep(0.1)
        time.sleep(2.0)
    finally:
        for prober in probers:
            prober.stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    for prober in probers:
        prober.thread.join()
        failed = [(at, what) for at, ok, what in prober.samples if not ok]
        assert len(prober.samples) > 100
        assert not failed, (prober.url, failed[:10])
    log.seek(0)
    assert "the web server serves the current checkout" in log.read()
