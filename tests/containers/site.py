"""An OpenTrace install on the container engine that the host agent updates: the compose preset for real.

`ComposeSite` is a git clone of an upstream repository (this checkout tagged v1.1.5;
releases are added with tests/e2e's `add_release`, optionally broken at `migrate` or
`healthcheck`), installed with the real install.sh (which starts the real agent through
updater.sh). Updates are requested as an admin would: the registry document is offered,
OpenTrace checks it, and the admin clicks "Install update" over HTTP.

The registry is served from inside the web container (`python -m http.server` on its own
127.0.0.1, for the length of one `check_updates`): the containers cannot reach the host's
loopback, and the tests talk to nothing but 127.0.0.1.

Used by tests/containers/test_update_compose.py and bench/downtime_compose.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

from testing.e2e import AdminClient, add_release
from testing.helpers import free_port, git
from testing.registry_server import EXPIRES, envelope, new_key
from tests.containers.stack import HealthRunner, Stack, copy_checkout

REGISTRY_PORT = 8765
REGISTRY_DIR = "registry"  # in the data dir: /app/data/registry in the containers
ADMIN_PASSWORD = "compose-admin-pw 7%"


class ComposeSite(AdminClient):
    admin_user = "ops"
    admin_password = ADMIN_PASSWORD
    tracking_key = ""  # a project's write key, once the module's fixture made one

    def __init__(self, root: Path, timings: dict[str, float], healthcheck_timeout: int = 90) -> None:
        self.root = root
        self.upstream = root / "upstream"
        self.project_dir = root / "opentrace"
        self.upstream.mkdir(parents=True)
        copy_checkout(self.upstream)
        (self.upstream / "VERSION").write_text("1.1.5\n", encoding="utf-8")
        git(self.upstream, "init", "-q", "-b", "main")
        git(self.upstream, "add", "-A")
        git(self.upstream, "commit", "-qm", "OpenTrace 1.1.5")
        git(self.upstream, "tag", "v1.1.5")
        git(root, "clone", "-q", str(self.upstream), str(self.project_dir))
        self.stack = Stack(
            project_dir=self.project_dir,
            project_name=f"otu{uuid.uuid4().hex[:8]}",
            http_port=free_port(),
            timings=timings,
        )
        self.url = self.stack.base_url
        self.session = requests.Session()
        self.healthcheck_timeout = healthcheck_timeout
        self.health_runner = HealthRunner(self.stack.project_name)
        self.meta_version = 0
        self.signing_key = new_key("k1")

    @property
    def data_dir(self) -> Path:
        return self.project_dir / "data"

    # --- life cycle -----------------------------------------------------------------------
    def set_up(self) -> None:
        """install.sh on the clone (v1.1.5), then log in as the admin it created."""
        self.health_runner.start()
        # Settings install.sh keeps as they are: where OpenTrace looks for releases.
        # Signed documents: the agent (root, on the host) then verifies the trigger's copy with
        # the pinned key; unsigned, it would fetch the registry itself, which is served inside
        # the web container only (SPEC §5).
        pinned = f"{self.signing_key.keyid}:{base64.b64encode(self.signing_key.public_raw).decode()}"
        (self.project_dir / ".env").write_text(
            f"OPENTRACE_REGISTRY_URL=http://127.0.0.1:{REGISTRY_PORT}/version.json\n"
            f"OPENTRACE_REGISTRY_KEYS={pinned}\n",
            encoding="utf-8",
        )
        password_file = self.root / "admin-password"
        password_file.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
        started = time.monotonic()
        result = self.stack.install(
            "--admin-user",
            self.admin_user,
            "--admin-password-file",
            str(password_file),
            # The agent install.sh starts inherits these (the real updater.sh, compose preset).
            extra_env={
                "OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT": str(self.healthcheck_timeout),
                "OPENTRACE_LOG_LEVEL": "INFO",
            },
        )
        self.stack.timings["install of the v1.1.5 clone"] = time.monotonic() - started
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        self.login()

    def down(self) -> None:
        try:
            self.stack.down()
        finally:
            self.health_runner.stop()

    # --- the project ------------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        result = self.stack.exec_web("python", "manage.py", *args, timeout=300)
        return result.stdout

    def shell(self, code: str) -> str:
        """Python run by `manage.py shell` in the web container; its last output line."""
        lines = self.manage("shell", "-c", code).strip().splitlines()
        return lines[-1] if lines else ""

    def logs(self) -> str:
        parts = []
        agent_log = self.stack.agent_state / "agent.log"
        if agent_log.exists():
            parts.append("--- agent.log ---\n" + agent_log.read_text(errors="replace")[-8000:])
        web = self.stack.compose("logs", "--no-color", "--tail", "60", "web", check=False)
        parts.append("--- web ---\n" + web.stdout[-6000:])
        return "\n".join(parts)

    def health(self) -> tuple[int, str | None]:
        try:
            status, body = self.stack.healthz()
        except (OSError, ValueError):
            return 0, None
        return status, body.get("version")

    def settled_health(self, version: str, timeout: float = 30) -> tuple[int, str | None]:
        """/healthz once it answers 200 for `version`, or what it answered last after `timeout`.

        On this stack a single answer can be a 503 for a moment while another container holds
        the embedded engine (tests/containers/docker-compose.test.yml): a state is judged on
        what /healthz settles on, not on one probe.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.health()
            if seen == (200, version) or time.monotonic() > deadline:
                return seen
            time.sleep(1.0)

    def release(self, version: str, breakage: str | None = None, downtime_seconds: int | None = None) -> str:
        """Publish v<version> upstream, offer it in the registry and have OpenTrace check it.

        `downtime_seconds`: the registry entry declares downtime (`"downtime": true`) of
        about that long."""
        commit = add_release(self.upstream, version, breakage)
        self.meta_version += 1
        entry: dict[str, object] = {
            "version": version,
            "git_tag": f"v{version}",
            "git_commit": commit,
            "notes": "compose",
        }
        if downtime_seconds is not None:
            entry.update(downtime=True, downtime_seconds=downtime_seconds)
        document = {
            "schema": 1,
            "project": "opentrace",
            "meta_version": self.meta_version,
            "expires": EXPIRES,
            "releases": [entry],
        }
        folder = self.data_dir / REGISTRY_DIR
        folder.mkdir(mode=0o755, exist_ok=True)
        (folder / "version.json").write_bytes(envelope(json.dumps(document).encode(), self.signing_key))
        (folder / "version.json").chmod(0o644)
        script = (
            f"python -m http.server {REGISTRY_PORT} --bind 127.0.0.1 --directory /app/data/{REGISTRY_DIR}"
            " >/dev/null 2>&1 & server=$!; sleep 1; python manage.py check_updates --json; "
            "status=$?; kill $server; exit $status"
        )
        checked = self.stack.exec_web("sh", "-c", script, timeout=120)
        result = json.loads(checked.stdout.strip().splitlines()[-1])
        assert result["latest"] == version, result
        return commit

    def write_key(self, name: str = "downtime probe") -> str:
        return self.shell(
            f"from tracking.models import Project; print(Project.objects.create(name={name!r}).write_key)"
        )

    def track(self, event: str) -> str:
        """One event through the public tracking endpoint; its event_id once acknowledged."""
        event_id = str(uuid.uuid4())
        now = datetime.now(UTC).isoformat()
        body = {
            "events": [
                {"event": event, "distinct_id": "restore-test", "timestamp": now, "event_id": event_id}
            ]
        }
        answer = self.session.post(
            f"{self.url}/api/track", json=body, headers={"X-OpenTrace-Key": self.tracking_key}, timeout=30
        )
        assert answer.status_code == 200, answer.text[:500]
        return event_id

    def host_python(self) -> str:
        """The Python updater.sh runs the agent with: install.sh's .agent-venv, else this one."""
        venv = self.project_dir / ".agent-venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable

    def host_agent_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`updater.sh <command>` as root under the systemd unit's UMask=0027."""
        return subprocess.run(
            ["sh", "-c", 'umask 0027 && exec bash updater.sh "$@"', "updater.sh", *args],
            cwd=self.project_dir,
            env=self.stack.env(OPENTRACE_AGENT_PRESET="compose"),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def restore(self, backup: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.host_python(), "restore_all.py", str(backup), "--preset", "compose", *args],
            cwd=self.project_dir,
            env=self.stack.env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def stored_event_ids(self, event: str = "downtime-probe", wait: float = 90) -> set[str]:
        """The event_ids of `event` in ClickHouse, once the flusher has emptied its buffer."""
        deadline = time.monotonic() + wait
        backlog = "from tracking.buffer import get_buffer; print(get_buffer().backlog())"
        while self.shell(backlog) != "0" and time.monotonic() < deadline:
            time.sleep(2)
        query = (
            "import json; from opentrace.clickhouse import client\n"  # noqa: S608 - parameterised
            "with client.connect(busy_timeout=60) as c:\n"
            "    rows = c.query('SELECT DISTINCT toString(event_id) FROM ' + client.database() + '.events '\n"
            f"                   'WHERE event = {{e:String}}', parameters={{'e': {event!r}}}).result_rows\n"
            "print(json.dumps([r[0] for r in rows]))"
        )
        return set(json.loads(self.shell(query) or "[]"))

    # --- what an update left behind ------------------------------------------------------------
    def event_seqs(self, run_id: str) -> list[int]:
        return json.loads(
            self.shell(
                "import json; from updates.models import UpdateEvent; "
                f"print(json.dumps(list(UpdateEvent.objects.filter(run_id='{run_id}')"
                ".order_by('id').values_list('seq', flat=True))))"
            )
        )

    def tables(self) -> set[str]:
        return set(
            json.loads(
                self.shell(
                    "import json; from django.db import connection; "
                    "print(json.dumps(connection.introspection.table_names()))"
                )
            )
        )

    def clickhouse_status(self) -> dict[str, str]:
        status = json.loads(self.manage("clickhouse_migrate", "status", "--json"))
        return {m["name"]: m["state"] for m in status["migrations"]}

    def image_id(self, image: str) -> str:
        done = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", image],
            env=self.stack.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    def web_image(self) -> str:
        return f"opentrace/web:{self.env_value('OPENTRACE_IMAGE_TAG') or 'local'}-embedded"

    def running_image(self, service: str = "web") -> str:
        container = self.stack.compose("ps", "-q", service).stdout.strip()
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{.Image}}", container],
            env=self.stack.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def env_value(self, key: str) -> str | None:
        for line in (self.project_dir / ".env").read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() == key:
                return value.strip()
        return None

    def agent_pid(self) -> int:
        pid = int((self.stack.agent_state / "agent.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
