"""OpenTrace served for real: `scripts/run_local.py` (the `make run` supervisor) in a child process.

The browser talks to it over HTTP on a free 127.0.0.1 port; it has its own data dir (SQLite,
filesystem broker, embedded ClickHouse), so nothing leaks between it and the test process.
`manage()` runs a management command against the same data dir, for setting up users.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT, clean_env, closed_port

ADMIN_USER = "admin"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "browser-admin-Pa55"


@dataclass
class LiveServer:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def health(self, timeout: float = 5) -> dict:
        with urllib.request.urlopen(self.url("/healthz"), timeout=timeout) as response:
            return json.load(response)

    def wait_healthy(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"OpenTrace exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return self.health()
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
                last = exc
                time.sleep(0.3)
        raise AssertionError(f"/healthz never answered 200 ({last}):\n{self.log_tail()}")

    def manage(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def create_staff(self, *users: tuple[str, str, str]) -> None:
        """Staff accounts (username, email, password) without any permission, in one command."""
        code = (
            "from django.contrib.auth import get_user_model\n"
            f"for name, email, password in {list(users)!r}:\n"
            "    get_user_model().objects.create_user(name, email, password, is_staff=True)\n"
        )
        self.manage("shell", "-c", code)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_live_server(data_dir: Path, **env: str) -> LiveServer:
    """Start the supervisor with web only (no worker, no agent) and wait for /healthz."""
    port = closed_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    child_env = clean_env(
        OPENTRACE_DATA_DIR=str(data_dir),
        OPENTRACE_PORT=str(port),
        OPENTRACE_BASE_URL=base_url,
        OPENTRACE_RUN_AGENT="0",
        OPENTRACE_RUN_WORKER="0",
        OPENTRACE_ADMIN_USER=ADMIN_USER,
        OPENTRACE_ADMIN_EMAIL=ADMIN_EMAIL,
        OPENTRACE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PYTHONUNBUFFERED="1",
        **env,
    )
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "scripts/run_local.py"],
            cwd=ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(base_url, data_dir, child_env, process, log_path)
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    return server
