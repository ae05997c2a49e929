"""The agent's test harness: a fake project in real git, a SPEC §6 backend, signed triggers, the agent.

The backend here is a stand-in for OpenTrace's API written from SPEC §6 (it verifies the
HMAC and timestamp independently of the agent's own code and of `contract/`) plus a
`/healthz` that reports the version the fake app "serves". The fake project is a small git
repo whose `manage.py` records what the agent asked of it; its restart command copies
`VERSION` to the served file. `host_agent/tests/conftest.py` wraps these as fixtures; the
contract tests and bench/ use them too.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from testing.helpers import ROOT, git
from testing.signer import request_signature, trigger_signature

SECRET = "test-agent-secret-0123456789-abcdefghijklmnop"
AGENT_ROOT = ROOT

FAKE_MANAGE = r"""
import json, os, sqlite3, sys, time
from pathlib import Path
data = Path(os.environ["OPENTRACE_DATA_DIR"])
cmd = sys.argv[1]
with open(data / "manage.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
if os.environ.get("FAKE_PAUSE") in (cmd, "argv:" + " ".join(sys.argv[1:])):
    # A slow step: says so in data/paused, then waits (at most a minute) for data/resume.
    (data / "paused").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (data / "resume").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
fail = os.environ.get("FAKE_FAIL", "")
version = Path("VERSION").read_text().strip()
lint_fail = os.environ.get("FAKE_LINT_FAIL")
if "--check-compatible" in sys.argv and lint_fail in (f"django:{version}", f"clickhouse:{version}"):
    # The exit status contract.migrations.INCOMPATIBLE, after the linter's report.
    print("(fake, 0002_remove_text)... ERR\n\tDROPPING columns (table: fake_note, column: text)")
    print("CommandError: not backward compatible with the running release")
    sys.exit(3)
if cmd == "migrate_all" and "--state" in sys.argv:
    # The fake app's "migrations" are the rows of its schema table (SPEC §9's JSON shape).
    db = sqlite3.connect(data / "opentrace.sqlite3")
    found = db.execute("SELECT name FROM sqlite_master WHERE name = 'schema'").fetchall()
    rows = db.execute("SELECT version FROM schema").fetchall() if found else []
    print(json.dumps({"django": {"fake": [v for (v,) in rows]}, "clickhouse": []}))
    sys.exit(0)
if cmd == "migrate_all" and "--revert-to" in sys.argv:
    keep = json.loads(sys.stdin.read())["django"].get("fake", [])
    if os.environ.get("FAKE_IRREVERSIBLE") == version:
        print(f"CommandError: Django migration fake.{version} is irreversible (RunPython); nothing reverted")
        sys.exit(1)
    db = sqlite3.connect(data / "opentrace.sqlite3")
    gone = [v for (v,) in db.execute("SELECT version FROM schema") if v not in keep]
    db.execute("DELETE FROM schema WHERE version NOT IN (%s)" % ",".join("?" * len(keep)), keep)
    if not keep:
        db.execute("DROP TABLE schema")
    db.commit()
    print("ClickHouse: reverted nothing to revert")
    print("Django: reverted " + (", ".join("fake." + v for v in gone) or "nothing to revert"))
    sys.exit(0)
if cmd in ("migrate_all", "migrate"):
    db = sqlite3.connect(data / "opentrace.sqlite3")
    db.execute("CREATE TABLE IF NOT EXISTS schema (version TEXT)")
    db.execute("INSERT INTO schema VALUES (?)", (version,))
    db.commit()
    if fail == f"migrate:{version}":
        print("django.db.utils.OperationalError: injected failure")
        sys.exit(1)
print(f"{cmd} ok at {version}")
"""

RESTART = (
    "import shutil, os; shutil.copy('VERSION', os.path.join(os.environ['OPENTRACE_DATA_DIR'], 'served'))"
)


@dataclass
class Project:
    upstream: Path
    checkout: Path
    data_dir: Path
    commits: dict[str, str]

    # What the fake registry serves: set by a test, else the manifest of the pending trigger
    # (the backend fetched it from the registry), like a registry that did not change since.
    registry: bytes | None = None
    last_manifest: bytes | None = None

    @property
    def updates(self) -> Path:
        return self.data_dir / "updates"

    @property
    def state_dir(self) -> Path:
        """The agent's state: `<DATA_DIR>/agent`, as the tests run it as the data dir's owner."""
        return self.data_dir / "agent"

    def registry_document(self) -> bytes:
        if self.registry is not None:
            return self.registry
        try:  # the agent asks while the trigger is still there
            pending = json.loads((self.updates / "trigger").read_bytes())
            return base64.b64decode(pending["manifest"])
        except (OSError, ValueError, KeyError, TypeError):
            return self.last_manifest or b"{}"

    def manage_log(self) -> list[str]:
        path = self.data_dir / "manage.log"
        return path.read_text().splitlines() if path.exists() else []

    def served(self) -> str:
        path = self.data_dir / "served"
        return path.read_text().strip() if path.exists() else ""

    def db_rows(self) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "opentrace.sqlite3") as db:
            return db.execute("SELECT * FROM notes ORDER BY 1").fetchall()

    def head(self) -> str:
        return git(self.checkout, "rev-parse", "HEAD").strip()

    def add_release(self, version: str, *, files: dict[str, str] | None = None) -> str:
        (self.upstream / "VERSION").write_text(version + "\n")
        for name, text in (files or {}).items():
            (self.upstream / name).write_text(text)
        git(self.upstream, "add", "-A")
        git(self.upstream, "commit", "-qm", f"release {version}")
        git(self.upstream, "tag", f"v{version}")
        commit = git(self.upstream, "rev-parse", "HEAD").strip()
        self.commits[version] = commit
        return commit


def make_project(base: Path, *, start: str = "1.1.5", releases: Sequence[str] = ("1.2.0",)) -> Project:
    """A checkout of the fake app at `start` in `base`, whose upstream also has `releases` tagged;
    its database holds one note, and it "serves" `start`."""
    upstream = base / "upstream"
    upstream.mkdir(parents=True)
    git(upstream, "init", "-q", "-b", "main")
    (upstream / "manage.py").write_text(FAKE_MANAGE)
    (upstream / "requirements.txt").write_text("# nothing to install\n")
    (upstream / ".gitignore").write_text("data/\n")
    project = Project(upstream, base / "opentrace", base / "opentrace" / "data", {})
    project.add_release(start)
    git(base, "clone", "-q", str(upstream), str(project.checkout))
    for version in releases:
        project.add_release(version)
    project.data_dir.mkdir()
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO notes VALUES (1, 'written before the update')")
    (project.data_dir / "served").write_text(start + "\n")
    return project


@dataclass
class FakeBackend:
    """SPEC §6 endpoints with independent HMAC checks, and a /healthz for the fake app.

    Events are stored in the fake app's own SQLite database, like the real backend stores
    them in its database: a rollback that restores the database loses what came after the
    backup, and the agent must deliver it again.
    """

    project: Project
    heartbeats: list[dict] = field(default_factory=list)
    rejected_auth: int = 0
    refused_while_down: int = 0
    forced_down: bool = False
    health_status: int = 200
    refuse_seq: set[int] = field(default_factory=set)
    url: str = ""

    @property
    def down(self) -> bool:
        # Also down while the fake app "restarts" (its restart command holds this file).
        return self.forced_down or (self.project.data_dir / "backend-down").exists()

    @down.setter
    def down(self, value: bool) -> None:
        self.forced_down = value

    def maintenance_for(self) -> str | None:
        """The release the agent's maintenance flag stops (`contract.maintenance`), if any."""
        try:
            return json.loads((self.project.data_dir / "run" / "maintenance").read_text())["stopped"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _db(self) -> sqlite3.Connection:
        # The agent's backup and restore lock this file for a while; on a loaded machine, longer
        # than 10 s (a read failed with "database is locked").
        db = sqlite3.connect(self.project.data_dir / "opentrace.sqlite3", timeout=60)
        db.execute(
            "CREATE TABLE IF NOT EXISTS agent_events (run_id TEXT, seq INT, body TEXT, UNIQUE(run_id, seq))"
        )
        db.execute("CREATE TABLE IF NOT EXISTS agent_heartbeats (body TEXT)")
        return db

    def store_heartbeat(self, payload: dict) -> None:
        self.heartbeats.append(payload)
        with closing(self._db()) as db, db:
            db.execute("INSERT INTO agent_heartbeats VALUES (?)", (json.dumps(payload),))

    @property
    def stored_heartbeats(self) -> list[dict]:
        """The heartbeats in the backend's database (a restore drops those since the backup)."""
        with closing(self._db()) as db:
            rows = db.execute("SELECT body FROM agent_heartbeats ORDER BY rowid").fetchall()
        return [json.loads(body) for (body,) in rows]

    @property
    def events(self) -> list[dict]:
        with closing(self._db()) as db:
            rows = db.execute("SELECT body FROM agent_events ORDER BY rowid").fetchall()
        return [json.loads(body) for (body,) in rows]

    def store(self, run_id: str, events: list[dict]) -> tuple[int, int]:
        accepted = duplicates = 0
        with closing(self._db()) as db, db:
            for event in events:
                try:
                    db.execute(
                        "INSERT INTO agent_events VALUES (?, ?, ?)",
                        (run_id, event["seq"], json.dumps({**event, "run_id": run_id})),
                    )
                    accepted += 1
                except sqlite3.IntegrityError:
                    duplicates += 1
        return accepted, duplicates

    def seqs(self, run_id: str) -> list[int]:
        return [e["seq"] for e in self.events if e["run_id"] == run_id]

    def run_events(self, run_id: str) -> list[dict]:
        return [e for e in self.events if e["run_id"] == run_id]

    def final_state(self, run_id: str) -> str | None:
        states = [e["state"] for e in self.run_events(run_id) if e["kind"] == "run"]
        return states[-1] if states else None


def _handler(backend: FakeBackend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if self.path == "/version.json":
                body = backend.project.registry_document()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
            if self.path != "/healthz" or backend.down:
                return self._answer(503 if backend.down else 404, {})
            version = backend.project.served() if backend.project else "?"
            if backend.maintenance_for() == version:
                # The real app's maintenance page (opentrace/maintenance.py) for the stopped release.
                return self._answer(503, {"status": "maintenance", "version": version})
            self._answer(backend.health_status, {"status": "ok", "version": version})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if backend.down:
                backend.refused_while_down += 1
                return self._answer(503, {"error": "down"})
            stamp = self.headers.get("X-OpenTrace-Timestamp", "")
            given = self.headers.get("X-OpenTrace-Signature", "")
            expected = request_signature(SECRET, stamp, body)
            if (
                not stamp.isdigit()
                or abs(time.time() - int(stamp)) > 300
                or not hmac.compare_digest(given, expected)
            ):
                backend.rejected_auth += 1
                return self._answer(401, {"error": "bad signature"})
            payload = json.loads(body)
            if self.path == "/api/updates/agent/heartbeat":
                backend.store_heartbeat(payload)
                return self._answer(200, {"accepted": 1, "duplicates": 0})
            if self.path != "/api/updates/agent/events":
                return self._answer(404, {})
            for event in payload["events"]:
                if event["seq"] in backend.refuse_seq:
                    return self._answer(409, {"error": "forbidden transition"})
            accepted, duplicates = backend.store(payload["run_id"], payload["events"])
            self._answer(200, {"accepted": accepted, "duplicates": duplicates})

    return Handler


@contextlib.contextmanager
def serve_backend(project: Project) -> Iterator[FakeBackend]:
    """The fake backend for `project` on a port of 127.0.0.1 (its `url`), until the block ends."""
    state = FakeBackend(project=project)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def manifest_body(*versions: str, commit: dict[str, str] | None = None) -> bytes:
    releases = [
        {"version": v, "git_tag": f"v{v}", **({"git_commit": commit[v]} if commit and v in commit else {})}
        for v in versions
    ]
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {"schema": 1, "project": "opentrace", "meta_version": 1, "expires": expires}
    document["releases"] = releases
    return json.dumps(document).encode()


def sign(fields: dict) -> str:
    """The trigger's signature (SPEC §5) with the tests' agent secret."""
    return trigger_signature(SECRET, fields)


def trigger_fields(
    target: str = "1.2.0", *, run_id: str | None = None, manifest: bytes | None = None, **extra
) -> dict:
    fields = {
        "run_id": run_id or str(uuid.uuid4()),
        "target_version": target,
        "git_tag": f"v{target}",
        "git_commit": None,
        "requested_by": "root_admin",
        "requested_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "manifest": base64.b64encode(manifest or manifest_body(target)).decode(),
    }
    fields.update(extra)
    fields["signature"] = sign(fields)
    return fields


def write_trigger(project: Project, fields: dict | bytes) -> str | None:
    project.updates.mkdir(parents=True, exist_ok=True)
    data = fields if isinstance(fields, bytes) else json.dumps(fields).encode()
    if not isinstance(fields, bytes):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            project.last_manifest = base64.b64decode(fields["manifest"])
    tmp = project.updates / ".trigger.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, project.updates / "trigger")
    return None if isinstance(fields, bytes) else fields["run_id"]


def agent_argv(
    project: Project, backend: FakeBackend, command: str = "once", restart: str | None = None
) -> list[str]:
    return [
        command,
        "--project-dir",
        str(project.checkout),
        "--data-dir",
        str(project.data_dir),
        "--backend-url",
        backend.url,
        "--registry-url",
        f"{backend.url}/version.json",
        "--preset",
        "local",
        "--restart-command",
        restart or f'{sys.executable} -c "{RESTART}"',
    ]


def agent_env(secret: str = SECRET, **extra: str) -> dict[str, str]:
    """The agent's environment: ours minus the app's settings, plus the agent's own."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENTRACE_", "DATABASE_URL", "CLICKHOUSE_"))
    }
    env.update(
        OPENTRACE_AGENT_SECRET=secret,
        OPENTRACE_AGENT_BACKUP_CLICKHOUSE="0",
        # Long enough for the fake app to restart on a loaded 2-core CI machine (2 s flaked).
        OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="10",
        OPENTRACE_AGENT_PYTHON=sys.executable,
        PYTHONPATH=str(AGENT_ROOT),
    )
    env.update(extra)
    return env


# For a test whose app never turns healthy: the agent gives up after this long instead of
# the 10 s above (which waits for a fake app that does come back). Only the first probe
# must answer, for a rollback to a release that is still serving.
UNHEALTHY_TIMEOUT = "3"


def run_agent(
    project: Project, backend: FakeBackend, command: str = "once", restart: str | None = None, **env: str
) -> subprocess.CompletedProcess:
    """The real entry point, `python -m host_agent`, as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend, command, restart)],
        cwd=project.checkout,
        env=agent_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class PausedRun:
    """`python -m host_agent once` held inside a step by the fake manage.py (`FAKE_PAUSE`)."""

    process: subprocess.Popen
    resume_file: Path
    stdout: str = ""
    stderr: str = ""

    def resume(self, timeout: float = 120) -> int:
        """Let the step go on and wait for the agent to end; its exit code."""
        self.resume_file.touch()
        self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode


@contextlib.contextmanager
def paused_run(
    project: Project, backend: FakeBackend, step: str = "migrate", timeout: float = 90, **env: str
) -> Iterator[PausedRun]:
    """The real agent, paused once its `manage.py <step>` started; resumed (or killed) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend)],
        cwd=project.checkout,
        env=agent_env(FAKE_PAUSE=step, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = PausedRun(process, project.data_dir / "resume")
    try:
        paused, deadline = project.data_dir / "paused", time.monotonic() + timeout
        while not paused.exists():
            assert process.poll() is None, f"the agent ended before it paused: {process.communicate()}"
            assert time.monotonic() < deadline, f"the agent did not reach {step} within {timeout:.0f} s"
            time.sleep(0.05)
        yield run
        if process.poll() is None and not run.resume_file.exists():
            run.resume()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


RESTORE = AGENT_ROOT / "restore_all.py"


def restore(project: Project, backup_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """`restore_all.py` (as the operator runs it) on `backup_dir` for `project`."""
    return subprocess.run(
        [
            sys.executable,
            str(RESTORE),
            str(backup_dir),
            "--preset",
            "local",
            "--project-dir",
            str(project.checkout),
            "--data-dir",
            str(project.data_dir),
            *extra,
        ],
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
