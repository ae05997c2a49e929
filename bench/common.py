"""Shared pieces of the benchmarks: the machine, statistics, results, a real backend, a fake project.

Every benchmark is a script of its own (`.venv/bin/python bench/<name>.py`) that prints a
small table and writes `bench/results/<name>.json`. They only ever talk to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
PG_BASE = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
BENCH_SECRET_KEY = "bench-" + "k" * 60  # DEBUG off needs a long key; never used outside 127.0.0.1

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testing import agent  # noqa: E402 - found through the path above
from testing.agent import RESTART, Project  # noqa: E402
from testing.helpers import free_port  # noqa: E402
from testing.registry_server import RegistryServer, respond, start_registry_server  # noqa: E402
from testing.signer import request_headers  # noqa: E402


# --- the machine ---------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": free.splitlines()[1] if len(free.splitlines()) > 1 else free,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# --- statistics and output -----------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); exact for the small samples we take."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values),
        "p50": statistics.median(values),
        "p95": pct(values, 95),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def write_results(name: str, data: dict[str, Any], started: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": " ".join([".venv/bin/python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "machine_at_start": data.pop("_machine_at_start", None),
        "machine_at_end": machine(),
        "wall_seconds": round(time.monotonic() - started, 1),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)} ({payload['wall_seconds']} s)")
    return path


# --- PostgreSQL ----------------------------------------------------------------------
def pg_url(name: str) -> str:
    return f"{PG_BASE}/{name}"


def recreate_database(name: str) -> str:
    """A fresh, empty PostgreSQL database of our own (the bench never touches anyone else's)."""
    import psycopg

    assert name.startswith("ot_bench"), name
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def backend_env(data_dir: Path, database: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like backend: DEBUG off, PostgreSQL, its own data dir."""
    # No CELERY_BROKER_URL: the embedded default (kombu's filesystem transport) needs no server.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENTRACE_", "CLICKHOUSE_", "CELERY_", "DATABASE_URL", "DJANGO_"))
    }
    env.update(
        OPENTRACE_DATA_DIR=str(data_dir),
        DATABASE_URL=pg_url(database),
        DEBUG="0",
        SECRET_KEY=BENCH_SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def setup_django(env: dict[str, str]) -> None:
    """Configure this process as the backend described by `env` (before any Django import)."""
    for key in [k for k in os.environ if k.startswith(("OPENTRACE_", "CLICKHOUSE_", "DATABASE_URL"))]:
        del os.environ[key]
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")
    import django

    django.setup()


def manage(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )


def wait_http(url: str, timeout: float = 60.0, ok: Sequence[int] = (200,)) -> float:
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in ok:
                    return time.monotonic() - start
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)


@contextmanager
def gunicorn(env: dict[str, str], workers: int = 2) -> Iterator[str]:
    """The production web server (as in the Dockerfile) on a free 127.0.0.1 port."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "opentrace.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/api/updates/agent/heartbeat", ok=(405,))
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


# --- signed requests to the agent API (SPEC §6), by the tests' signer written from the spec ------
def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", **request_headers(secret, body)}


def agent_secret(data_dir: Path) -> str:
    return (data_dir / "secrets" / "agent_secret").read_text().strip()


# --- a fake project for the agent (real git, a manage.py that only records) ---------------
def make_project(base: Path, *, start: str, releases: Sequence[str]) -> Project:
    """A project checkout at `start` whose upstream also has `releases` tagged: the agent
    tests' own fake app (`testing.agent`), so the bench drives the same one."""
    return agent.make_project(base, start=start, releases=releases)


def agent_command(project: Project, backend_url: str, command: str = "once") -> list[str]:
    return [
        PYTHON,
        "-m",
        "host_agent",
        command,
        "--project-dir",
        str(project.checkout),
        "--data-dir",
        str(project.data_dir),
        "--backend-url",
        backend_url,
        "--preset",
        "local",
        "--restart-command",
        f'{PYTHON} -c "{RESTART}"',
    ]


def agent_env(secret: str, **extra: str) -> dict[str, str]:
    """The agent's environment, reading the offers from this process's loopback registry.

    With no keys pinned the agent fetches the registry itself to check a trigger's offer
    (SPEC §5); without this it would look up the default public registry and reject every run.
    """
    registry_url = shared_registry().url(REGISTRY_PATH)
    return agent.agent_env(
        secret,
        **{"OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT": "5", "OPENTRACE_REGISTRY_URL": registry_url, **extra},
    )


_registry: RegistryServer | None = None


def shared_registry() -> RegistryServer:
    """One loopback registry for the benchmark's whole process: `offer()` serves each offered
    document there, and the agents `agent_env()` configures read it."""
    global _registry
    if _registry is None:
        _registry = start_registry_server()
    return _registry


class HealthProxy:
    """The agent's backend URL: `/api/...` forwarded to the real backend, `/healthz` answered
    for the fake app (its `served` file), since the real backend's version never changes here.
    """

    def __init__(self, backend_url: str, served: Path) -> None:
        self.backend_url = backend_url
        self.served = served
        self.down = False  # everything answers 503
        self.api_down = False  # only the agent API answers 503 (the app itself stays up)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/healthz" or proxy.down:
                    return self._send(503, b"{}")
                version = proxy.served.read_text().strip() if proxy.served.exists() else "?"
                self._send(200, json.dumps({"status": "ok", "version": version}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy.down or proxy.api_down:
                    return self._send(503, b'{"error": "down"}')
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower().startswith(("x-opentrace", "content-type"))
                }
                request = urllib.request.Request(proxy.backend_url + self.path, data=body, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        self._send(response.status, response.read())
                except urllib.error.HTTPError as exc:
                    self._send(exc.code, exc.read())
                except OSError:
                    self._send(503, b'{"error": "backend unreachable"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def manifest(version: str, downtime_seconds: int | None = None) -> bytes:
    """A registry document offering `version`; with `downtime_seconds`, a release that
    declares downtime (`"downtime": true`) of about that long."""
    release: dict[str, object] = {"version": version}
    if downtime_seconds is not None:
        release.update(downtime=True, downtime_seconds=downtime_seconds)
    return json.dumps(
        {"schema": 1, "project": "opentrace", "meta_version": 1, "releases": [release]}
    ).encode()


@contextmanager
def tempdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def new_token() -> str:
    return secrets.token_hex(16)


# --- the install flow, as the Install button runs it -----------------------------------------
REGISTRY_PATH = "/v.json"


def offer(
    version: str,
    *,
    heartbeat_to: str | None = None,
    secret: str = "",
    registry: RegistryServer | None = None,
    downtime_seconds: int | None = None,
) -> None:
    """Make `version` the offered release: a real registry check (after setup_django())
    against a loopback registry serving `manifest(version)`.

    `registry`: a server that outlives the check and keeps serving the document at
    `REGISTRY_PATH`, for an agent that reads the registry itself (no keys pinned: it fetches
    its OPENTRACE_REGISTRY_URL to check the offer, SPEC §5); by default the process's
    `shared_registry()`, which `agent_env()` points the agents at.

    With `heartbeat_to` (the backend's URL), a signed heartbeat also tells the backend an
    agent is there, for benchmarks that start theirs (`once`) only once the trigger is written.
    """
    from django.test.utils import override_settings

    from updates.checking import run_check
    from updates.models import RegistryCheck

    server = registry or shared_registry()
    document = respond(manifest(version, downtime_seconds), headers={"Content-Type": "application/json"})
    url = server.serve(REGISTRY_PATH, document)
    with override_settings(OPENTRACE_REGISTRY_URL=url):
        check = run_check(RegistryCheck.Trigger.COMMAND)
    if check.outcome == RegistryCheck.Outcome.FAILED:
        raise SystemExit(f"the registry check for {version} failed: {check.error}")
    if heartbeat_to is not None:
        beat = json.dumps(
            {"agent_id": "bench-host", "agent_version": "1", "deployed_version": "", "busy": False}
        ).encode()
        request = urllib.request.Request(
            heartbeat_to + "/api/updates/agent/heartbeat", data=beat, headers=signed_headers(secret, beat)
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def request_install(user: Any) -> Any:
    """Install the offered release the way the Install button does (`updates.actions`): the
    refusal rules apply, and a refusal ends the benchmark. The trigger is written on return."""
    from updates import actions

    try:
        return actions.request_install(user=user, idempotency_key=new_token(), again=True)
    except actions.Refused as refused:
        raise SystemExit(f"the install was refused: {refused.message}") from None
