"""A sandbox to run the real install.sh in: fake `docker`, `docker-compose` and `systemctl`.

The fakes are one small Python program installed under each name. Every call appends
`{"argv": [...], "cwd": ..., "stdin": ...}` to a JSON-lines log, so a test can assert the
exact commands install.sh ran. Behaviour is steered by files in the state folder:
`compose-v2` (docker has the compose plugin), `ps-output` (what `compose ps` prints),
`info-fails`, `fail-on` (a substring of the command line that makes the call exit 1), and the
systemctl state `enabled`/`active`.

The sandbox's PATH holds only these fakes and links to the real tools install.sh needs, so
a test can also take one away (git, python3, docker-compose) and see the error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.packaging.compose import ROOT

INSTALL_SH = ROOT / "install.sh"

# What install.sh runs besides docker, compose and systemctl.
REAL_TOOLS = (
    "bash",
    "sh",
    "cat",
    "chmod",
    "chown",
    "dirname",
    "basename",
    "git",
    "grep",
    "id",
    "mkdir",
    "mktemp",
    "mv",
    "nohup",
    "rm",
    "sed",
    "setsid",
    "sleep",
    "stat",
    "tail",
    "head",
    "env",
)

FAKE = r"""#!@PYTHON@
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_STATE"])
name = os.path.basename(sys.argv[0])
argv = [name, *sys.argv[1:]]
line = " ".join(argv)
stdin = None
if "exec" in argv:
    stdin = sys.stdin.read()
with open(state / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "stdin": stdin}) + "\n")

fail_on = state / "fail-on"
if fail_on.exists() and fail_on.read_text().strip() in line:
    print(f"{name}: injected failure", file=sys.stderr)
    sys.exit(1)

if name == "systemctl":
    unit_state = {"is-enabled": "enabled", "is-active": "active"}
    if argv[1] in unit_state:
        sys.exit(0 if (state / unit_state[argv[1]]).exists() else 1)
    if argv[1:3] == ["enable", "--now"]:
        (state / "enabled").touch()
        (state / "active").touch()
    sys.exit(0)

if name == "docker" and argv[1:] == ["info"]:
    sys.exit(1 if (state / "info-fails").exists() else 0)
if name == "docker" and argv[1:2] == ["compose"]:
    if not (state / "compose-v2").exists():
        print("docker: 'compose' is not a docker command.", file=sys.stderr)
        sys.exit(1)
    argv = argv[1:]
if argv[-1:] == ["version"]:
    print("Docker Compose version v2.29.7" if argv[0] == "compose" else "docker-compose version 1.29.2")
    sys.exit(0)
if "ps" in argv and (state / "ps-output").exists():
    print((state / "ps-output").read_text(), end="")
    sys.exit(0)
if "migrate_all" in argv:
    print("Django (postgresql): applied 20 migration(s)")
if "exec" in argv and argv[-1].endswith("ensure_admin"):
    print("Created admin user")
sys.exit(0)
"""

FAKE_UPDATER = """#!/bin/sh
# Stands in for the agent: records how it was started, then idles until killed.
env >"$OPENTRACE_DATA_DIR/agent-env"
exec sleep 300
"""


@dataclass
class HealthServer:
    """A real HTTP server on 127.0.0.1 answering /healthz with the statuses given, then the last."""

    statuses: list[int]
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
                body = json.dumps({"status": "ok" if status == 200 else "error"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Sandbox:
    root: Path
    project: Path
    state: Path
    bin: Path
    unit_dir: Path
    systemd_runtime: Path
    health: HealthServer

    def calls(self) -> list[list[str]]:
        return [entry["argv"] for entry in self.entries()]

    def entries(self) -> list[dict]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    def clear_calls(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def remove_tool(self, name: str) -> None:
        (self.bin / name).unlink()

    def set(self, flag: str, content: str = "") -> None:
        (self.state / flag).write_text(content, encoding="utf-8")

    def env_file(self) -> Path:
        return self.project / ".env"

    @property
    def agent_state(self) -> Path:
        return self.root / "agent-state"

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {
            "PATH": str(self.bin),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "FAKE_STATE": str(self.state),
            "OPENTRACE_SYSTEMD_UNIT_DIR": str(self.unit_dir),
            "OPENTRACE_SYSTEMD_RUNTIME_DIR": str(self.systemd_runtime),
            "OPENTRACE_INSTALL_POLL": "0.2",
            # The agent's state dir (root's default is /var/lib/opentrace-agent).
            "OPENTRACE_AGENT_STATE_DIR": str(self.agent_state),
            # The agent's Python with the Docker SDK (requirements-dev): no venv, no pip.
            "OPENTRACE_AGENT_HOST_PYTHON": sys.executable,
            **(env or {}),
        }
        return subprocess.run(
            ["bash", str(INSTALL_SH), "--project-dir", str(self.project), *args],
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stop_agent(self) -> None:
        pid_file = self.project / "data" / "run" / "agent.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)


def make_sandbox(root: Path, health_statuses: list[int]) -> Iterator[Sandbox]:
    bin_dir = root / "bin"
    state = root / "state"
    project = root / "project"
    for folder in (bin_dir, state, project / "deploy"):
        folder.mkdir(parents=True)
    python = os.path.realpath(sys.executable)
    for tool in REAL_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run install.sh"
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(python)
    for fake in ("docker", "docker-compose", "systemctl"):
        (bin_dir / fake).write_text(FAKE.replace("@PYTHON@", python), encoding="utf-8")
        (bin_dir / fake).chmod(0o755)
    shutil.copy(ROOT / "docker-compose.prod.yml", project / "docker-compose.prod.yml")
    shutil.copy(ROOT / "deploy" / "opentrace-agent.service", project / "deploy" / "opentrace-agent.service")
    (project / "updater.sh").write_text(FAKE_UPDATER, encoding="utf-8")
    (project / "updater.sh").chmod(0o755)
    health = HealthServer(health_statuses)
    sandbox = Sandbox(
        root=root,
        project=project,
        state=state,
        bin=bin_dir,
        unit_dir=root / "etc-systemd-system",
        systemd_runtime=root / "run-systemd-system",
        health=health,
    )
    try:
        yield sandbox
    finally:
        sandbox.stop_agent()
        health.close()
