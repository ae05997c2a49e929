"""Run OpenTrace locally with embedded defaults: `make run`.

Prepares the database (migrations, the admin account), then supervises the processes a local
install needs — the web server (gunicorn, the production server, with
deploy/gunicorn.conf.py), the Celery worker with beat, the tracking flusher (`manage.py
flush_events`, the one writer of tracked events into ClickHouse) and the host agent in
`local` mode — restarting one that dies. SIGHUP (the agent's `local` preset sends it during
`deploy`) reloads the web server gracefully with the checkout as it now is: gunicorn's
master keeps the listening socket and forks workers of the new code beside the old ones
(SIGTTIN); only once every new worker has loaded the app and passed the /healthz checks
(before it takes a connection: deploy/gunicorn.conf.py) are the old ones retired (SIGTTOU:
they finish their requests first), so no request is refused or cut during an update, and a
release that is not healthy never answers one: its workers wait beside the old ones until
the agent's rollback reloads the previous code, which retires them. Then the worker (warm
shutdown: it finishes its task; queued ones wait in the broker) and the flusher restart.
SIGINT/SIGTERM stop everything. The supervisor's pid is in `<DATA_DIR>/run/supervisor.pid`.
OPENTRACE_RUN_WORKER=0 / OPENTRACE_RUN_FLUSHER=0 / OPENTRACE_RUN_AGENT=0 leave the worker /
the flusher / the agent out (the end-to-end tests run their own agent); OPENTRACE_HOST /
OPENTRACE_PORT choose the address, and the base URL in mails (password resets, notices)
follows them unless OPENTRACE_BASE_URL is set. The agent, the worker and the flusher start
once the web server answers, so the agent's first heartbeat is received (the admin would
read "offline" until its next one otherwise).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = os.environ.get("OPENTRACE_HOST", "127.0.0.1")
PORT = os.environ.get("OPENTRACE_PORT", "8000")
WEB_READY_TIMEOUT = 60.0  # seconds to wait for the web server before starting the rest anyway
# One gunicorn worker (of 8 threads) by default: the embedded ClickHouse engine admits one
# process at a time. (Two were tried: under a load average of 40 the reload test saw two
# connection resets; one worker passed it. WEB_CONCURRENCY=2 for more throughput.)
WEB_WORKERS = int(os.environ.get("WEB_CONCURRENCY", "1"))
RELOAD_TIMEOUT = 120.0  # seconds for the new workers to load and pass their checks
RELOAD_GATE = "reloading"  # deploy/gunicorn.conf.py: new workers wait for their checks while it exists
STOP_TIMEOUTS = {"web": 35.0, "worker": 60.0}  # gunicorn's graceful timeout; a task's warm shutdown


def base_url(environ: Mapping[str, str]) -> str:
    """The URL mails link to: OPENTRACE_BASE_URL, else this runner's own address."""
    host = environ.get("OPENTRACE_HOST", HOST)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104
    return environ.get("OPENTRACE_BASE_URL") or f"http://{shown}:{environ.get('OPENTRACE_PORT', PORT)}"


def child_env() -> dict[str, str]:
    return dict(
        os.environ,
        OPENTRACE_BACKEND_URL=f"http://{HOST}:{PORT}",
        OPENTRACE_BASE_URL=base_url(os.environ),
        WEB_CONCURRENCY=str(WEB_WORKERS),
        GUNICORN_THREADS=os.environ.get("GUNICORN_THREADS", "8"),
        OPENTRACE_WEB_READY_DIR=str(ready_dir()),
    )


def wait_listening(host: str, port: int, timeout: float, alive: object = None) -> bool:
    """True once something accepts connections on host:port (the web server), False on timeout."""
    deadline = time.monotonic() + timeout
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            return False
        try:
            with socket.create_connection((target, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def data_dir() -> Path:
    value = Path(os.environ.get("OPENTRACE_DATA_DIR", "data"))
    return value if value.is_absolute() else ROOT / value


def ready_dir() -> Path:
    """Where each gunicorn worker leaves a mark (its pid) once it has loaded the app."""
    return data_dir() / "run" / "web-ready"


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def has_command(name: str) -> bool:
    out = subprocess.run(
        [PYTHON, "manage.py", "help", "--commands"], cwd=ROOT, capture_output=True, text=True
    )
    return name in out.stdout.split()


def commands() -> dict[str, list[str]]:
    procs: dict[str, list[str]] = {
        "web": [
            PYTHON,
            "-m",
            "gunicorn",
            "--config",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--bind",
            f"[{HOST}]:{PORT}" if ":" in HOST else f"{HOST}:{PORT}",
            "opentrace.wsgi:application",
        ],
    }
    if os.environ.get("OPENTRACE_RUN_WORKER", "1") != "0":
        procs["worker"] = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "opentrace",
            "worker",
            "-B",
            "--pool=solo",
            "--loglevel=INFO",
        ]
    flusher = ROOT / "tracking" / "management" / "commands" / "flush_events.py"
    if flusher.exists() and os.environ.get("OPENTRACE_RUN_FLUSHER", "1") != "0":
        procs["flusher"] = [PYTHON, "manage.py", "flush_events"]
    if (ROOT / "host_agent" / "__main__.py").exists() and os.environ.get("OPENTRACE_RUN_AGENT", "1") != "0":
        procs["agent"] = [PYTHON, "-m", "host_agent", "run", "--preset", "local", "--project-dir", str(ROOT)]
    return procs


class Supervisor:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.restart_requested = False
        # Workers added by a reload whose code never passed its checks (retired by the next).
        self.unready_workers = 0

    def start(self, name: str) -> None:
        cmd = commands()[name]
        if name == "web":
            # A new master serves what it loads (no old workers to keep): no gate, no leftovers.
            (ready_dir() / RELOAD_GATE).unlink(missing_ok=True)
            self.unready_workers = 0
        self.children[name] = subprocess.Popen(cmd, cwd=ROOT, env=child_env())

    def stop(self, name: str) -> None:
        proc = self.children.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUTS.get(name, 15.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def reload_web(self) -> None:
        """New gunicorn workers with the checkout as it now is, then the old ones retired.

        The new workers take no connection until their /healthz checks pass (the gate file,
        deploy/gunicorn.conf.py). Workers that never get there (a release that is not
        healthy) are left waiting beside the old ones, which keep serving; the next reload
        (the agent's rollback) retires them with the old ones once its own workers are ready.
        """
        master = self.children.get("web")
        if master is None or master.poll() is not None:
            self.restart("web")
            return
        marks = ready_dir()
        marks.mkdir(parents=True, exist_ok=True)
        (marks / RELOAD_GATE).write_text("reload\n")
        before = set(os.listdir(marks)) - {RELOAD_GATE}
        for _ in range(WEB_WORKERS):
            master.send_signal(signal.SIGTTIN)  # one more worker, forked now: it imports the new code
            time.sleep(0.2)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while len(set(os.listdir(marks)) - before - {RELOAD_GATE}) < WEB_WORKERS:
            if master.poll() is not None:
                print("run_local: the web server exited during the reload; restarting it", flush=True)
                self.restart("web")
                return
            if self.restart_requested or self.stopping or time.monotonic() > deadline:
                # Not healthy (or superseded by the next reload): the old workers keep serving.
                self.unready_workers += WEB_WORKERS
                print(
                    "run_local: the new web workers did not pass their checks; the old ones keep serving",
                    flush=True,
                )
                return
            time.sleep(0.1)
        retire = WEB_WORKERS + self.unready_workers
        for _ in range(retire):
            master.send_signal(signal.SIGTTOU)  # the oldest worker stops accepting and finishes its requests
            time.sleep(0.2)
        self.unready_workers = 0
        for mark in before:
            (marks / mark).unlink(missing_ok=True)
        (marks / RELOAD_GATE).unlink(missing_ok=True)
        print("run_local: the web server serves the current checkout", flush=True)

    def restart_app(self) -> None:
        print("run_local: reloading web, restarting worker and flusher from the current checkout", flush=True)
        self.reload_web()
        for name in ("worker", "flusher"):
            if name in commands():
                self.restart(name)

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.start("web")
        web = self.children["web"]
        if not wait_listening(
            HOST, int(PORT), WEB_READY_TIMEOUT, alive=lambda: web.poll() is None and not self.stopping
        ):
            print("run_local: the web server is not answering yet; starting the rest anyway", flush=True)
        for name in commands():
            if name != "web":
                self.start(name)
        print(
            f"run_local: OpenTrace is at http://{HOST}:{PORT}/admin/ (health: /healthz); Ctrl-C stops it",
            flush=True,
        )
        while not self.stopping:
            if self.restart_requested:
                self.restart_requested = False
                self.restart_app()
            for name, proc in list(self.children.items()):
                if proc.poll() is not None and not self.stopping:
                    print(f"run_local: {name} exited with {proc.returncode}; restarting in 2 s", flush=True)
                    time.sleep(2)
                    self.start(name)
            time.sleep(0.2)
        for name in list(self.children):
            self.stop(name)
        return 0

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self.restart_requested = True


def main() -> int:
    os.chdir(ROOT)
    # The development runner: Django's debug pages and static files from the apps, on the
    # loopback (settings default to DEBUG off, as production runs). The secret key, unless
    # SECRET_KEY is set, is generated into the data dir like the other secrets.
    os.environ.setdefault("DEBUG", "true")
    if has_command("migrate_all"):
        manage("migrate_all")
    else:
        manage("migrate", "--noinput")
    manage("ensure_admin")
    run_dir = data_dir() / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ready_dir(), ignore_errors=True)
    pid_file = run_dir / "supervisor.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        return Supervisor().run()
    finally:
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
