"""Small helpers shared by the foundation tests."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Sockets bound by closed_port(), kept for the life of the test process.
_HELD: list[socket.socket] = []


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
