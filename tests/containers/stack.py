"""A checkout of OpenTrace deployed on the container engine: compose, HTTP and timing helpers.

The container suites build on these. install: tests/containers/test_install.py. The
agent's compose-preset update and rollback suites go beside it (test_update_compose.py):
make `Stack.project_dir` a clone of an upstream repository holding the v1.1.5 and v1.2.0
tags (host_agent/tests/conftest.py's `Project` builds one), run `Stack.install()`, write a
signed trigger into `<project_dir>/data/updates/`, and watch `healthz()` (version),
`container_ids()` (recreated) and `timings`. install.sh records the override in `.env` as
`COMPOSE_FILE`, which the agent's compose commands must honour on this engine.

Every compose call layers tests/containers/docker-compose.test.yml over the production
file (see that file for the one deviation: the embedded ClickHouse engine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testing.e2e import copy_tree

ROOT = Path(__file__).resolve().parents[2]
OVERRIDE = Path("tests/containers/docker-compose.test.yml")
BASE_IMAGE = "localhost/debian-python:bookworm"


def copy_checkout(destination: Path) -> Path:
    """The files of this checkout that git would keep (tracked or not ignored): what a clone has."""
    return copy_tree(destination, leave_out=())


class HealthRunner:
    """Runs the containers' health checks where the engine does not schedule them itself.

    Docker runs HEALTHCHECK/healthcheck commands in its daemon. podman hands them to
    systemd timers, and there is no systemd on this machine, so health would stay
    "starting" forever and `depends_on: service_healthy` would never release. This thread
    does what the timers would: `podman healthcheck run` for each container of the project,
    every `interval` seconds. Nothing runs when the engine is not podman.
    """

    def __init__(self, project_name: str, interval: float = 2.0) -> None:
        self.project_name = project_name
        self.interval = interval
        self.podman = shutil.which("podman")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"health-{project_name}", daemon=True)

    def start(self) -> HealthRunner:
        if self.podman:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        assert self.podman is not None
        while not self._stop.is_set():
            names = subprocess.run(
                [
                    self.podman,
                    "ps",
                    "--filter",
                    f"label=com.docker.compose.project={self.project_name}",
                    "--format",
                    "{{.Names}}",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            for name in names:
                subprocess.run(
                    [self.podman, "healthcheck", "run", name], capture_output=True, timeout=120, check=False
                )
            self._stop.wait(self.interval)


@dataclass
class Stack:
    project_dir: Path
    project_name: str
    http_port: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def agent_state(self) -> Path:
        """The agent's state dir (as root its default would be the host's /var/lib/opentrace-agent)."""
        return self.project_dir.parent / "agent-state"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, **extra: str) -> dict[str, str]:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OPENTRACE_", "COMPOSE_"))
            and key not in {"DATABASE_URL", "CELERY_BROKER_URL"}
        }
        environ["COMPOSE_PROJECT_NAME"] = self.project_name
        environ["OPENTRACE_AGENT_STATE_DIR"] = str(self.agent_state)
        environ.update(extra)
        return environ

    def compose_argv(self, *args: str) -> list[str]:
        return ["docker-compose", "-f", "docker-compose.prod.yml", "-f", str(OVERRIDE), *args]

    def compose(
        self, *args: str, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.compose_argv(*args),
            cwd=self.project_dir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def install(
        self, *args: str, timeout: float = 1800, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "bash",
                "install.sh",
                "--non-interactive",
                "--compose-cmd",
                "docker-compose",
                "--compose-file",
                str(OVERRIDE),
                "--http-port",
                str(self.http_port),
                *args,
            ],
            cwd=self.project_dir,
            env=self.env(**(extra_env or {})),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def exec_web(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`docker exec` in the first running web container: after a rollout its number is not 1,
        which docker-compose v1's `exec web` would look for."""
        container = self.compose("ps", "-q", "web").stdout.split()[0]
        result = subprocess.run(
            ["docker", "exec", container, *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def container_ids(self) -> dict[str, str]:
        ids = {}
        for service in ("proxy", "web", "worker", "beat", "flusher", "postgres", "redis", "clickhouse"):
            ids[service] = self.compose("ps", "-q", service).stdout.strip()
        return ids

    def health_states(self) -> dict[str, str]:
        states = {}
        for service, container in self.container_ids().items():
            if not container:
                states[service] = "missing"
                continue
            inspected = subprocess.run(
                ["docker", "inspect", "--format", "{{json .State}}", container],
                env=self.env(),
                capture_output=True,
                text=True,
                check=True,
            )
            state = json.loads(inspected.stdout)
            states[service] = (state.get("Health") or {}).get("Status") or state.get("Status", "?")
        return states

    def wait_all_healthy(self, timeout: float = 300) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            states = self.health_states()
            if set(states.values()) == {"healthy"} or time.monotonic() > deadline:
                return states
            time.sleep(2)

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def healthz(self) -> tuple[int, dict]:
        """The status and JSON body of /healthz; a body that is not JSON (the proxy's HTML
        maintenance page while no web container is ready) as `{"body": <its start>}`."""
        status, body = self.get("/healthz")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"body": body[:300].decode("utf-8", "replace")}

    def settled_healthz(self, timeout: float = 30) -> tuple[int, dict]:
        """/healthz once it answers 200, or what it answered last after `timeout`.

        Right after a start the proxy can count the web container down again for a moment
        (a readiness check answered by a worker whose own checks have not passed yet, while
        the embedded engine is held by another process): a state is judged on what /healthz
        settles on, not on one probe (as tests/containers/site.py's settled_health)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.healthz()
            if seen[0] == 200 or time.monotonic() > deadline:
                return seen
            time.sleep(1.0)

    def wait_for_healthz(self, timeout: float = 300) -> float:
        """Seconds until /healthz answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.get("/healthz", timeout=5)[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.base_url}/healthz did not answer 200 within {timeout}s")

    def stop_agent(self) -> None:
        pid_file = self.project_dir / "data" / "run" / "agent.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(pid_file.read_text().strip()), 15)

    def down(self) -> None:
        self.stop_agent()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300, check=False)
