"""Ports, waits, git and child processes: the small helpers every suite and bench/ share."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

ROOT = Path(__file__).resolve().parent.parent

# Sockets bound by closed_port(), kept for the life of the test process.
_HELD: list[socket.socket] = []

T = TypeVar("T")

# Who commits in the tests' repositories (upstreams, fake projects, e2e releases).
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` (failing on a non-zero exit); its standard output."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=True
    )
    return done.stdout


def poll(condition: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T | None:
    """Call `condition` until it returns something true (returned) or `timeout` s have passed (None).

    For a test that asserts something does *not* happen within a while, `assert not poll(...)`.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """`poll`, but a timeout fails the test, naming `what` it waited for."""
    result = poll(condition, timeout, interval)
    if not result:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
    return result


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, and nothing else can take.

    The port stays bound (without listening) by this process until it exits: a connection
    to it is refused, and another test, worker or child process cannot start a server on it
    while a test counts on it being closed.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return sock.getsockname()[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, for a child process to listen on.

    Picked below the kernel's ephemeral range: the ports the kernel hands out to port-0
    servers and outgoing connections of the other tests and workers are never among them,
    so the port is very unlikely to be taken before the child binds it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    candidates = random.sample(range(20000, low), min(50, low - 20000)) if low > 20100 else []
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # no range to pick from: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for a child OpenTrace process: ours minus service URLs, plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CLICKHOUSE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_health(base: str, proc: subprocess.Popen, timeout: float = 90) -> dict:
    """The first 200 answer of `base`/healthz (its JSON), while `proc` (the server) runs."""
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


@dataclass
class LocalRunner:
    """`scripts/run_local.py` running (as `make run` runs it), with its output in `log`."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    env: dict[str, str]
    log: IO[str]


def start_local_runner(data_dir: Path, **overrides: str) -> LocalRunner:
    """The local runner on a free port (no agent), its data in `data_dir`, its output in
    `data_dir`/runner.log (kept open for reading after the process ends)."""
    port = free_port()
    env = clean_env(
        OPENTRACE_DATA_DIR=str(data_dir),
        OPENTRACE_PORT=str(port),
        OPENTRACE_RUN_AGENT="0",
        PYTHONUNBUFFERED="1",
        **overrides,
    )
    log = open(data_dir / "runner.log", "w+")  # noqa: SIM115 - read after the process ends
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return LocalRunner(proc, f"http://127.0.0.1:{port}", port, env, log)


HEALTH_SNIPPET = """
import json, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")
django.setup()
from django.test import Client
response = Client(HTTP_HOST="127.0.0.1").get("/healthz")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


def healthz_in_child(env: dict[str, str]) -> tuple[int, dict]:
    """GET /healthz in a fresh process configured by `env` (for failures a test process can't fake)."""
    result = subprocess.run(
        [sys.executable, "-c", HEALTH_SNIPPET], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return data["status"], data["body"]
