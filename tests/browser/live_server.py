"""OpenTrace served for real: `scripts/run_local.py` (the `make run` supervisor) in a child process.

The browser talks to it over HTTP on a free 127.0.0.1 port; it has its own checkout and data
dir (SQLite, filesystem broker, embedded ClickHouse), so nothing leaks between it and the
test process. The host agent runs beside it in `local` mode, started once the web server
answers (its first heartbeat then lands, instead of 30 s later). `manage()` runs a
management command against the same data dir, for setting up users.
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

from tests.helpers import clean_env, closed_port

ADMIN_USER = "admin"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "browser-admin-Pa55"


@dataclass
class LiveServer:
    base_url: str
    project_dir: Path
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    agent: subprocess.Popen[bytes] | None = None

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
            cwd=self.project_dir,
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

    def start_agent(self) -> None:
        argv = [sys.executable, "-m", "host_agent", "run", "--preset", "local"]
        argv += ["--project-dir", str(self.project_dir), "--backend-url", self.base_url]
        with open(self.data_dir / "agent.log", "wb") as log:
            self.agent = subprocess.Popen(
                argv, cwd=self.project_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def agent_log_tail(self, lines: int = 60) -> str:
        path = self.data_dir / "agent.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for process in (self.agent, self.process):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_live_server(project_dir: Path, *, agent: bool = True, **env: str) -> LiveServer:
    """Start the supervisor (web only: no worker; the agent separately) and wait for /healthz."""
    port = closed_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = project_dir / "data"  # git-ignored, as in a real install
    data_dir.mkdir(parents=True, exist_ok=True)
    # Nothing of the test session's own OpenTrace configuration reaches the install.
    child_env = {k: v for k, v in clean_env().items() if not k.startswith("OPENTRACE_")}
    child_env.update(
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
            cwd=project_dir,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(base_url, project_dir, data_dir, child_env, process, log_path)
    try:
        server.wait_healthy()
        if agent:
            server.start_agent()
    except BaseException:
        server.stop()
        raise
    return server
