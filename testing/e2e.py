"""End-to-end harness: a real upstream repository, a running OpenTrace, a registry, the agent.

`Site` builds an upstream git repository from this checkout (tagged v1.1.5) plus a v1.2.0
commit (VERSION bumped, one Django and one ClickHouse migration, optionally broken on
purpose), clones v1.1.5, serves it with `scripts/run_local.py` (embedded defaults: SQLite,
filesystem broker, chdb) on a free port, offers 1.2.0 from a registry server on 127.0.0.1,
and runs `python -m host_agent run --preset local` as a separate process. The admin is
driven over HTTP like a browser would (login, confirmation page, POST with CSRF).
`tests/e2e/conftest.py` wraps it as fixtures; the browser and container suites and bench/ use it too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import requests

from testing.helpers import ROOT, free_port, git, wait_for
from testing.registry_server import respond, start_registry_server

PYTHON = sys.executable
ADMIN_PASSWORD = "e2e-admin-password-1"


def copy_tree(dest: Path, leave_out: tuple[str, ...] = ("tests/", "testing/")) -> Path:
    """This checkout's files (tracked, plus new ones not ignored) into `dest`: what a clone has.

    `leave_out`: path prefixes not copied; by default tests and their harness, which are not
    part of a release (the container suite keeps them: its compose override lives in tests/).
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        source = ROOT / rel
        if not source.is_file() or (leave_out and rel.startswith(leave_out)):
            continue  # deleted files are skipped
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def make_base_upstream(base: Path) -> Path:
    """An upstream repository in `base` (a new folder): this tree, committed and tagged v1.1.5."""
    base.mkdir()
    git(base, "init", "-q", "-b", "main")
    copy_tree(base)
    (base / "VERSION").write_text("1.1.5\n")
    git(base, "add", "-A")
    git(base, "commit", "-qm", "OpenTrace 1.1.5")
    git(base, "tag", "v1.1.5")
    return base


def _latest_migration(folder: Path) -> str:
    names = sorted(p.stem for p in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1]


def _next_number(folder: Path, pattern: str) -> int:
    numbers = [int(p.name[:4]) for p in folder.glob(pattern)]
    return max(numbers, default=0) + 1


IRREVERSIBLE_REASON = "the end-to-end marker cannot be taken back"


def add_release(
    upstream: Path, version: str, breakage: str | None = None, *, irreversible: bool = False
) -> str:
    """Commit and tag v<version> on top of v1.1.5 in `upstream`; returns its commit.

    The release bumps VERSION and adds one Django and one ClickHouse migration, both
    reversible; `breakage` ("build", "migrate" or "healthcheck") also breaks it at that step on
    purpose ("migrate_clickhouse": its ClickHouse migration fails after the Django one applied),
    "slow" makes its Django migration take 8 s (a page that polls every 2 s sees the run
    running), and "remove_field" adds a Django migration that old code cannot live with.
    `irreversible` makes the ClickHouse migration `-- irreversible:` instead of reversible.
    """
    git(upstream, "checkout", "-q", "-B", f"release-{version}", "v1.1.5")
    (upstream / "VERSION").write_text(f"{version}\n")
    django_dir = upstream / "updates" / "migrations"
    leaf = _latest_migration(django_dir)
    number = _next_number(django_dir, "[0-9][0-9][0-9][0-9]_*.py")
    extra = '\n        migrations.RunSQL("SELECT e2e_no_such_function()"),' if breakage == "migrate" else ""
    if breakage == "slow":
        extra = "\n        migrations.RunPython(_e2e_wait, migrations.RunPython.noop),"
    (django_dir / f"{number:04d}_e2e_release_marker.py").write_text(
        "import time\n\nfrom django.db import migrations, models\n\n\n"
        "def _e2e_wait(apps, schema_editor):\n    time.sleep(8)\n\n\n"
        "class Migration(migrations.Migration):\n"
        f'    dependencies = [("updates", "{leaf}")]\n'
        "    operations = [\n"
        "        migrations.CreateModel(\n"
        '            name="E2EReleaseMarker",\n'
        '            fields=[("id", models.AutoField(primary_key=True))],\n'
        '            options={"db_table": "e2e_release_marker"},\n'
        "        ),"
        f"{extra}\n    ]\n"
    )
    if breakage == "remove_field":
        (django_dir / f"{number + 1:04d}_e2e_remove_severity.py").write_text(
            "from django.db import migrations\n\n\n"
            "class Migration(migrations.Migration):\n"
            f'    dependencies = [("updates", "{number:04d}_e2e_release_marker")]\n'
            '    operations = [migrations.RemoveField("updaterun", "severity")]\n'
        )
    ch_dir = upstream / "opentrace" / "clickhouse" / "migrations"
    ch_number = _next_number(ch_dir, "[0-9][0-9][0-9][0-9]_*.sql")
    create = (
        "CREATE TABLE IF NOT EXISTS ${db}.e2e_marker${on_cluster} (id UInt8)\n"
        "ENGINE = ${replicated}MergeTree ORDER BY id;\n"
    )
    if breakage == "migrate_clickhouse":
        create += "INSERT INTO ${db}.e2e_no_such_table (id) VALUES (1);\n"
    undo = (
        f"-- irreversible: {IRREVERSIBLE_REASON}\n"
        if irreversible
        else "-- down\nDROP TABLE IF EXISTS ${db}.e2e_marker${on_cluster} SYNC;\n"
    )
    (ch_dir / f"{ch_number:04d}_e2e_marker.sql").write_text(
        "-- Added by an end-to-end test release.\n" + create + undo
    )
    if breakage == "build":
        with open(upstream / "requirements.txt", "a") as handle:
            handle.write("./e2e-no-such-package-1.0-py3-none-any.whl\n")
    if breakage == "healthcheck":
        with open(upstream / "opentrace" / "health.py", "a") as handle:
            handle.write(
                "\n\ndef _e2e_broken() -> None:\n"
                '    raise CheckFailed("this release is broken on purpose (end-to-end test)")\n\n\n'
                'CHECKS["e2e"] = _e2e_broken\n'
            )
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", f"OpenTrace {version}")
    git(upstream, "tag", f"v{version}")
    return git(upstream, "rev-parse", "HEAD").strip()


class Registry:
    """The registry on 127.0.0.1 that the site checks: one document at `url`, `body` (settable)."""

    def __init__(self) -> None:
        self.meta_version = 0
        self.server = start_registry_server()
        self.url = self.server.url("/version.json")
        self.body = b"{}"

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: bytes) -> None:
        self._body = value
        self.server.serve("/version.json", respond(value, headers={"Content-Type": "application/json"}))

    def offer(self, version: str, commit: str, **fields: object) -> None:
        self.meta_version += 1
        self.body = json.dumps(
            {
                "schema": 1,
                "project": "opentrace",
                "meta_version": self.meta_version,
                "releases": [
                    {
                        "version": version,
                        "git_tag": f"v{version}",
                        "git_commit": commit,
                        "notes": "e2e",
                        **fields,
                    }
                ],
            }
        ).encode()

    def close(self) -> None:
        self.server.close()


class AdminClient:
    """The admin's side of an update, over HTTP like a browser: log in, click, watch progress.

    Needs `url`, `session` (requests), `admin_user`, `admin_password` and `logs()` (shown
    when a run does not finish) from the class it is mixed into.
    """

    url: str
    session: requests.Session
    admin_user = "admin"
    admin_password = ADMIN_PASSWORD

    def logs(self) -> str:
        return ""

    def login(self) -> None:
        self.session.get(f"{self.url}/admin/login/", timeout=10)
        response = self.session.post(
            f"{self.url}/admin/login/",
            data={
                "username": self.admin_user,
                "password": self.admin_password,
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
                "next": "/admin/",
            },
            timeout=10,
        )
        assert "sessionid" in self.session.cookies, response.text[:500]

    def progress(self) -> dict:
        try:
            response = self.session.get(f"{self.url}/admin/updates/system/progress/", timeout=5)
            return (
                response.json() if response.status_code == 200 else {"agent": {"online": False}, "run": None}
            )
        except (requests.RequestException, ValueError):
            return {"agent": {"online": False}, "run": None}

    def install(self, version: str) -> str:
        """Click "Install update" and confirm, as an admin would; returns the run id."""
        page = self.session.get(f"{self.url}/admin/updates/system/install/", timeout=10).text
        fields = dict(
            re.findall(
                r'name="(version|document_sha256|idempotency_key|csrfmiddlewaretoken)" value="([^"]*)"', page
            )
        )
        assert fields.get("version") == version, page[:2000]
        response = self.session.post(
            f"{self.url}/admin/updates/system/install/start/", data=fields, timeout=10
        )
        assert response.status_code == 200, response.text[:500]

        def requested() -> str | None:
            run = self.progress()["run"]
            return run["id"] if run and run["to_version"] == version else None

        return wait_for(requested, 10, "the requested run")

    def run(self, run_id: str) -> dict | None:
        try:
            response = self.session.get(
                f"{self.url}/admin/updates/system/progress/", params={"run": run_id}, timeout=5
            )
            return response.json()["run"] if response.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def wait_finished(self, run_id: str, timeout: float = 180) -> dict:
        def finished() -> dict | None:
            run = self.run(run_id)
            return run if run and run["terminal"] else None

        try:
            return wait_for(finished, timeout, "the run to finish", interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


class Site(AdminClient):
    """One OpenTrace install at v1.1.5 with its agent, in temporary folders."""

    def __init__(self, root: Path, base_upstream: Path) -> None:
        self.root = root
        self.upstream = root / "upstream"
        self.checkout = root / "opentrace"
        self.data_dir = root / "data"
        git(root, "clone", "-q", str(base_upstream), str(self.upstream))
        git(root, "clone", "-q", str(self.upstream), str(self.checkout))
        self.commit_115 = git(self.checkout, "rev-parse", "HEAD").strip()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.registry = Registry()
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    # --- processes -------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("OPENTRACE_", "DATABASE_URL", "CELERY_", "CLICKHOUSE_", "PYTHONPATH", "DJANGO_")
            )
        }
        env.update(
            OPENTRACE_DATA_DIR=str(self.data_dir),
            OPENTRACE_PORT=str(self.port),
            OPENTRACE_RUN_AGENT="0",
            OPENTRACE_RUN_WORKER="0",
            OPENTRACE_REGISTRY_URL=self.registry.url,
            OPENTRACE_ADMIN_USER="admin",
            OPENTRACE_ADMIN_PASSWORD=ADMIN_PASSWORD,
            OPENTRACE_LOG_LEVEL="WARNING",
        )
        env.update(extra)
        return env

    def start(self, **agent_env: str) -> None:
        log = open(self.root / "site.log", "wb")  # noqa: SIM115 - closed with the process
        self.supervisor = subprocess.Popen(
            [PYTHON, "scripts/run_local.py"],
            cwd=self.checkout,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: self.health()[1] == "1.1.5", 150, "OpenTrace 1.1.5 to serve /healthz")
        self.start_agent(**agent_env)
        self.login()
        wait_for(lambda: self.progress()["agent"]["online"], 30, "the agent's first heartbeat")

    def start_agent(self, **extra: str) -> None:
        log = open(self.root / "agent.log", "ab")  # noqa: SIM115 - closed with the process
        self.agent = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "host_agent",
                "run",
                "--preset",
                "local",
                "--project-dir",
                str(self.checkout),
                "--data-dir",
                str(self.data_dir),
                "--backend-url",
                self.url,
            ],
            cwd=self.checkout,
            env=self.env(OPENTRACE_AGENT_PYTHON=PYTHON, OPENTRACE_LOG_LEVEL="INFO", **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        for proc in (self.agent, self.supervisor):
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.registry.close()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=self.checkout,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def logs(self) -> str:
        parts = []
        for name in ("site.log", "agent.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name} ---\n" + path.read_text(errors="replace")[-6000:])
        return "\n".join(parts)

    # --- HTTP ----------------------------------------------------------------------------
    def health(self) -> tuple[int, str | None]:
        try:
            response = requests.get(f"{self.url}/healthz", timeout=5)
        except requests.RequestException:
            return 0, None
        try:
            return response.status_code, response.json().get("version")
        except ValueError:
            return response.status_code, None

    def release(
        self, version: str, breakage: str | None = None, *, irreversible: bool = False, **fields: object
    ) -> None:
        """Publish a release upstream, offer it in the registry (with `fields` in its entry), check."""
        commit = add_release(self.upstream, version, breakage, irreversible=irreversible)
        extra: dict[str, object] = {"irreversible": IRREVERSIBLE_REASON} if irreversible else {}
        self.registry.offer(version, commit, **extra, **fields)
        result = json.loads(self.manage("check_updates", "--json"))
        assert result["latest"] == version, result

    # --- the database, read directly -------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "opentrace.sqlite3", timeout=30)

    def event_seqs(self, run_id: str) -> list[int]:
        with closing(self.db()) as db:
            rows = db.execute(
                "SELECT seq FROM updates_updateevent WHERE run_id = ? ORDER BY id", (uuid.UUID(run_id).hex,)
            ).fetchall()
        return [seq for (seq,) in rows]

    def tables(self) -> set[str]:
        with closing(self.db()) as db:
            return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def clickhouse_status(self) -> dict[str, str]:
        status = json.loads(self.manage("clickhouse_migrate", "status", "--json"))
        return {m["name"]: m["state"] for m in status["migrations"]}
