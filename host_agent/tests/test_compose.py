"""The `compose` preset runs exactly the documented docker commands (SPEC §8).

`docker` and `docker-compose` here are stand-in executables on PATH that record their argv,
and the Docker API the agent's SDK talks to is a stand-in HTTP server (`FakeEngine`) that
keeps images and containers in a JSON file the fake CLI shares: docker is an external
tool, and what the agent promises is the command lines it runs and the API calls it makes.
The real engine is exercised by tests/containers (podman behind the Docker API).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from host_agent.config import load_config
from host_agent.presets import make_preset
from testing.agent import agent_env, manifest_body, run_agent, trigger_fields, write_trigger

FAKE_DOCKER = textwrap.dedent(
    """\
    #!{python}
    import json, os, shutil, sys
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\\n")
    args = sys.argv[1:]
    legacy = argv[0] == "docker-compose"
    data = os.environ["OPENTRACE_DATA_DIR"]
    state_file = os.environ["FAKE_ENGINE_STATE"]
    if args[:1] == ["compose"]:
        if os.environ.get("FAKE_DOCKER_NO_V2"):
            print("docker: 'compose' is not a docker command.", file=sys.stderr)
            sys.exit(1)
        args = args[1:]
    while args[:1] == ["-f"]:
        args = args[2:]
    if args == ["config", "--format", "json"]:
        if legacy:
            print("unknown flag: --format", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({{"services": {{
            "web": {{"image": "opentrace/web:local", "build": {{"context": "."}},
                    "environment": {{"DATABASE_URL": "postgres://opentrace:s3cret@postgres/opentrace"}}}},
            "worker": {{"image": "opentrace/web:local", "build": {{"context": "."}}}},
            "postgres": {{"image": "postgres:16.6-bookworm"}},
        }}}}))
    elif args[:1] == ["build"]:
        with open(state_file) as f:
            state = json.load(f)
        version = open("VERSION").read().strip()
        state["images"]["opentrace/web:local"] = "sha256:built-" + version
        with open(state_file, "w") as f:
            json.dump(state, f)
    elif args == ["up", "-d"]:
        shutil.copy("VERSION", os.path.join(data, "served"))
        with open(state_file) as f:
            state = json.load(f)
        exits = os.environ.get("FAKE_EXITS_AT", "")
        version = open("VERSION").read().strip()
        for name, container in state["containers"].items():
            container["image"] = state["images"].get(container["name"], "")
            container["status"] = "exited" if exits == name + ":" + version else "running"
        with open(state_file, "w") as f:
            json.dump(state, f)
    elif args[:3] == ["exec", "-T", "postgres"] and "pg_dump" in args[-1]:
        sys.stdout.buffer.write(b"PGDMP a dump of the 1.1.5 database")
    elif args[:3] == ["exec", "-T", "postgres"] and "pg_restore" in args[-1]:
        sys.stdout.buffer.write(b"-- SQL of: " + sys.stdin.buffer.read())
    elif args[:3] == ["exec", "-T", "postgres"] and "psql" in args[-1]:
        with open(os.path.join(data, "restored-from"), "wb") as out:
            out.write(sys.stdin.buffer.read())
    elif args[:5] == ["run", "--rm", "--no-deps", "-T", "manage"] and args[5:7] == ["python", "manage.py"]:
        # A one-off container of the image the web service names: the checkout's fake manage.py.
        import subprocess
        sys.exit(subprocess.run([sys.executable, "manage.py", *args[7:]]).returncode)
    """
)

COMPOSE = ["docker", "compose", "-f", "docker-compose.prod.yml"]
IN_DB = [*COMPOSE, "exec", "-T", "postgres", "sh", "-c"]
PG_DUMP = [*IN_DB, 'exec pg_dump -Fc --no-owner -U "$POSTGRES_USER" "$POSTGRES_DB"']
PG_RESTORE = [*IN_DB, "exec pg_restore --no-owner --file=-"]
PSQL = [
    *IN_DB,
    'exec psql -X -q -v ON_ERROR_STOP=1 --single-transaction -U "$POSTGRES_USER" -d "$POSTGRES_DB"',
]
OLD_WEB = "sha256:" + "a1" * 32
# manage.py in a one-off container of the new image (migrations run before `deploy`).
NEW_CODE = [*COMPOSE, "run", "--rm", "--no-deps", "-T", "manage", "python", "manage.py"]
CHECKS = [[*NEW_CODE, "migrate_all", "--state", "--check-compatible"]]


class FakeEngine:
    """The few Docker Engine API endpoints the agent's SDK calls, over the shared state file."""

    def __init__(self, state_file: Path, project: str) -> None:
        self.state_file = state_file
        self.requests: list[tuple[str, str]] = []
        self.tags: list[tuple[str, str]] = []
        self.label_filters: list[str] = []
        self.removed: list[str] = []
        self.events_log: Path | None = None
        self.write(
            {
                "images": {"opentrace/web:local": OLD_WEB, "postgres:16.6-bookworm": "sha256:" + "b2" * 32},
                "containers": {
                    name: {
                        "status": "running",
                        "health": health,
                        "image": image_id,
                        "name": image,
                        "project": project,
                    }
                    for name, health, image, image_id in (
                        ("web", "healthy", "opentrace/web:local", OLD_WEB),
                        ("worker", "healthy", "opentrace/web:local", OLD_WEB),
                        ("postgres", None, "postgres:16.6-bookworm", "sha256:" + "b2" * 32),
                    )
                },
            }
        )
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                engine.requests.append(("GET", self.path))
                self.reply(*engine.get(self.path))

            def do_POST(self) -> None:
                engine.requests.append(("POST", self.path))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = urlsplit(self.path).path.split("/", 2)[-1]
                if route.startswith("exec/") and route.endswith("/start"):
                    # The SDK reads the output as the raw stream of the hijacked connection:
                    # frames of (stream, 0, 0, 0, big-endian length) and the bytes, then EOF.
                    output = engine.exec_start(route.split("/")[1])
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.docker.raw-stream")
                    self.end_headers()
                    self.wfile.write(b"\x01\x00\x00\x00" + len(output).to_bytes(4, "big") + output)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.reply(*engine.post(self.path, json.loads(body) if body else None))

            def do_DELETE(self) -> None:
                engine.requests.append(("DELETE", self.path))
                self.reply(*engine.delete(self.path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def read(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state))

    def image(self, name: str) -> str | None:
        return self.read()["images"].get(name)

    def get(self, path: str) -> tuple[int, object]:
        parts = urlsplit(path)
        route = parts.path.split("/", 2)[-1] if parts.path.startswith("/v1.") else parts.path.lstrip("/")
        state = self.read()
        if route == "version":
            return 200, {"ApiVersion": "1.41", "Version": "fake", "MinAPIVersion": "1.24"}
        if route.startswith("images/") and route.endswith("/json"):
            name = unquote(route[len("images/") : -len("/json")])
            image_id = state["images"].get(name) or (name if name in state["images"].values() else None)
            return (200, {"Id": image_id}) if image_id else (404, {"message": f"no such image: {name}"})
        if route == "containers/json":
            filters = json.loads(parse_qs(parts.query).get("filters", ["{}"])[0])
            self.label_filters.extend(filters.get("label", []))
            wanted = {label.split("=", 1)[1] for label in filters.get("label", [])}
            return 200, [{"Id": name} for name, c in state["containers"].items() if c["project"] in wanted]
        if route.startswith("exec/") and route.endswith("/json"):
            return 200, {"ExitCode": 0, "Running": False}
        if route.startswith("containers/") and route.endswith("/json"):
            name = route[len("containers/") : -len("/json")]
            if name not in state["containers"]:
                return 404, {"message": f"No such container: {name}"}
            container = state["containers"][name]
            health = {"Health": {"Status": container["health"]}} if container["health"] else {}
            return 200, {
                "Id": name,
                "Name": f"/{container['project']}_{name}_1",
                "Image": container["image"],
                "State": {"Status": container["status"], **health},
                "Config": {"Labels": {"com.docker.compose.service": name}, "Image": container["name"]},
            }
        return 404, {"message": f"fake engine: no route {path}"}

    def exec_start(self, exec_id: str) -> bytes:
        state = self.read()
        argv = state["execs"][exec_id]["argv"]
        state["execs"][exec_id]["done"] = True
        self.write(state)
        return f"ran {argv[0]}\n".encode()

    def post(self, path: str, body: object = None) -> tuple[int, object]:
        parts = urlsplit(path)
        route = parts.path.split("/", 2)[-1]
        state = self.read()
        if route.startswith("containers/") and route.endswith("/exec") and isinstance(body, dict):
            # `docker exec` in a container: recorded in order with what the CLI was asked.
            name = route.split("/")[1]
            exec_id = f"exec{len(state.get('execs', {})) + 1}"
            state.setdefault("execs", {})[exec_id] = {"container": name, "argv": body["Cmd"], "done": False}
            self.write(state)
            self.log_event(["engine", "exec", name, *body["Cmd"]])
            return 201, {"Id": exec_id}
        if route.startswith("containers/") and route.endswith("/stop"):
            name = route.split("/")[1]
            state["containers"][name]["status"] = "exited"
            self.write(state)
            self.log_event(["engine", "stop", name])
            return 204, None
        if route.startswith("images/") and route.endswith("/tag"):
            source = unquote(route[len("images/") : -len("/tag")])
            query = parse_qs(parts.query)
            target = f"{query['repo'][0]}:{query['tag'][0]}"
            state = self.read()
            image_id = state["images"].get(source) or (source if source in state["images"].values() else None)
            if image_id is None:
                return 404, {"message": f"no such image: {source}"}
            previous = state["images"].get(target)
            state["images"][target] = image_id
            if previous and previous not in state["images"].values():
                state.setdefault("dangling", []).append(previous)
            self.write(state)
            self.tags.append((source, target))
            return 201, None
        return 404, {"message": f"fake engine: no route {path}"}

    def log_event(self, argv: list[str]) -> None:
        """Into the CLI's log when a test asked for one shared log (`events_log`)."""
        if self.events_log is not None:
            with open(self.events_log, "a") as log:
                log.write(json.dumps(argv) + "\n")

    def delete(self, path: str) -> tuple[int, object]:
        route = urlsplit(path).path.split("/", 2)[-1]
        if route.startswith("containers/"):
            name = route.split("/")[1]
            state = self.read()
            state["containers"].pop(name, None)
            self.write(state)
            self.log_event(["engine", "remove", name])
            return 204, None
        image_id = unquote(route[len("images/") :]) if route.startswith("images/") else ""
        state = self.read()
        if image_id in state["images"].values() or image_id in {
            c["image"] for c in state["containers"].values()
        }:
            return 409, {"message": f"conflict: {image_id} is tagged or in use"}
        if image_id not in state.setdefault("dangling", []):
            return 404, {"message": f"no such image: {image_id}"}
        state["dangling"].remove(image_id)
        self.write(state)
        self.removed.append(image_id)
        return 200, [{"Deleted": image_id}]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_docker(tmp_path, project):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "docker-compose"):
        path = bin_dir / name
        path.write_text(FAKE_DOCKER.format(python=sys.executable))
        path.chmod(0o755)
    log = tmp_path / "docker.log"
    engine = FakeEngine(tmp_path / "engine.json", project="opentrace")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(log),
        "FAKE_ENGINE_STATE": str(engine.state_file),
        "DOCKER_HOST": engine.url,
        "COMPOSE_PROJECT_NAME": "opentrace",
    }

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    yield env, calls, engine
    engine.close()


def run_compose(project, backend, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "host_agent",
        "once",
        "--preset",
        "compose",
        "--project-dir",
        str(project.checkout),
        "--data-dir",
        str(project.data_dir),
        "--backend-url",
        backend.url,
        "--registry-url",
        f"{backend.url}/version.json",
    ]
    return subprocess.run(
        argv, env=agent_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


def step_messages(backend, run_id: str, step: str) -> list[str]:
    return [
        e.get("message") or ""
        for e in backend.run_events(run_id)
        if e["kind"] == "step" and e.get("step") == step
    ]


def test_an_update_runs_the_documented_compose_commands(project, backend, fake_docker):
    env, calls, engine = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, env)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert calls() == [
        ["docker", "compose", "version"],
        PG_DUMP,
        [*COMPOSE, "config", "--format", "json"],
        # Once for the image web and worker share.
        [*COMPOSE, "build", "web"],
        *CHECKS,
        [*NEW_CODE, "migrate_all"],
        [*COMPOSE, "up", "-d"],
    ]
    # The running image is kept under :rollback (by id, through the API) before the build.
    assert engine.tags == [(OLD_WEB, "opentrace/web:rollback")]
    assert engine.image("opentrace/web:rollback") == OLD_WEB
    assert engine.image("opentrace/web:local") == "sha256:built-1.2.0"
    # Container state is read through the API, for this compose project only.
    assert set(engine.label_filters) == {"com.docker.compose.project=opentrace"}
    assert "3 containers running, none unhealthy" in " ".join(step_messages(backend, run_id, "healthcheck"))
    backup = next((project.data_dir / "backups").iterdir())
    assert (backup / "database.pgdump").read_bytes() == b"PGDMP a dump of the 1.1.5 database"
    # The resolved compose configuration holds secrets: it is never put in the run's log.
    assert not [e for e in backend.run_events(run_id) if "s3cret" in json.dumps(e)]


def test_without_the_v2_plugin_docker_compose_v1_is_used(project, backend, fake_docker):
    env, calls, engine = fake_docker
    write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_DOCKER_NO_V2": "1"})

    assert done.returncode == 0, done.stderr
    v1 = ["docker-compose", "-f", "docker-compose.prod.yml"]
    used = [c for c in calls() if c[0] == "docker-compose"]
    assert [*v1, "config", "--format", "json"] in used  # refused by v1: the running containers' images
    # One build per image its containers run (v1 skips postgres: it has no `build:`).
    assert [*v1, "build", "postgres", "web"] in used
    assert [*v1, "up", "-d"] in used
    assert not [c for c in calls() if c[0] == "docker" and c[1:2] != ["compose"]]
    # v1 cannot tell built images from pulled ones: every image is kept.
    assert engine.image("opentrace/web:rollback") == OLD_WEB
    assert engine.image("postgres:rollback") == "sha256:" + "b2" * 32


def test_the_extra_compose_files_in_compose_file_are_used_by_every_command(project, backend, fake_docker):
    env, calls, _ = fake_docker
    for name in ("docker-compose.prod.yml", "docker-compose.override-test.yml"):
        (project.checkout / name).write_text("services: {}\n")
    setting = "docker-compose.prod.yml:docker-compose.override-test.yml"
    (project.checkout / ".env").write_text(f"COMPOSE_FILE={setting}\n")
    (project.checkout / ".git" / "info" / "exclude").write_text("*.yml\n.env\n")
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, env)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    both = ["-f", "docker-compose.prod.yml", "-f", "docker-compose.override-test.yml"]
    compose_calls = [c for c in calls() if c[:2] == ["docker", "compose"] and c[2:3] != ["version"]]
    assert compose_calls
    assert all(c[2:6] == both for c in compose_calls), compose_calls


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("other.yml:docker-compose.prod.yml", "must start with docker-compose.prod.yml"),
        ("docker-compose.prod.yml:missing.yml", "names missing files: docker-compose.prod.yml, missing.yml"),
    ],
)
def test_a_bad_compose_file_setting_fails_the_run_before_the_backup(
    project, backend, fake_docker, setting, complaint
):
    env, _calls, engine = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "COMPOSE_FILE": setting})

    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    assert complaint in " ".join(step_messages(backend, run_id, "preflight"))
    assert not (project.data_dir / "backups").exists() or not list((project.data_dir / "backups").iterdir())
    assert engine.tags == []
    assert project.served() == "1.1.5"


def test_an_unreachable_engine_fails_the_run_at_preflight(project, backend, fake_docker):
    env, calls, engine = fake_docker
    engine.close()
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, env)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    assert "container engine" in " ".join(step_messages(backend, run_id, "preflight"))
    assert not [c for c in calls() if c[len(COMPOSE) : len(COMPOSE) + 1] == ["build"]]


def test_a_failed_migration_is_reverted_with_the_new_image_and_the_old_containers_keep_serving(
    project, backend, fake_docker
):
    env, calls, engine = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_FAIL": "migrate:1.2.0"})

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    after_migrate = calls()[calls().index([*NEW_CODE, "migrate_all"]) + 1 :]
    # Reverted in a container of the new image, then the tags point at the running images
    # again; the old containers were never stopped, so nothing is recreated.
    assert after_migrate == [
        [*NEW_CODE, "migrate_all", "--revert-to", "-"],
        [*COMPOSE, "config", "--format", "json"],
    ]
    assert engine.tags[-1] == (OLD_WEB, "opentrace/web:local")
    assert engine.image("opentrace/web:local") == OLD_WEB
    assert engine.read()["containers"]["web"]["image"] == OLD_WEB
    assert project.served() == "1.1.5"
    assert not (project.data_dir / "restored-from").exists()


def test_an_irreversible_migration_is_rolled_back_by_restoring_the_backup(project, backend, fake_docker):
    env, calls, engine = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_FAIL": "migrate:1.2.0", "FAKE_IRREVERSIBLE": "1.2.0"})

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    after_migrate = calls()[calls().index([*NEW_CODE, "migrate_all"]) + 1 :]
    assert after_migrate == [
        [*NEW_CODE, "migrate_all", "--revert-to", "-"],
        PG_RESTORE,
        PSQL,
        [*COMPOSE, "config", "--format", "json"],
        [*COMPOSE, "up", "-d"],
    ]
    assert engine.image("opentrace/web:local") == OLD_WEB
    assert project.served() == "1.1.5"
    restored = (project.data_dir / "restored-from").read_bytes()
    # The update's record is saved first, the schema emptied, the dump applied, the record put back.
    saved = restored.index(b"CREATE TEMP TABLE opentrace_keep_0 AS SELECT * FROM public.updates_updaterun")
    emptied = restored.index(b"DROP SCHEMA IF EXISTS public CASCADE;\n")
    dump = restored.index(b"-- SQL of: PGDMP a dump of the 1.1.5 database")
    put_back = restored.rindex(b"INSERT INTO public.updates_updaterun")
    assert saved < emptied < dump < put_back
    assert "database restored" in " ".join(step_messages(backend, run_id, "rollback"))


def test_a_container_that_exits_after_up_fails_the_deploy_and_is_rolled_back(project, backend, fake_docker):
    env, calls, engine = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_EXITS_AT": "worker:1.2.0"})

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    assert "not running after `up -d`: worker" in " ".join(step_messages(backend, run_id, "deploy"))
    # `migrate` ran before `deploy`; the rollback reverted it with the new image first.
    assert calls().index([*NEW_CODE, "migrate_all"]) < calls().index(
        [*NEW_CODE, "migrate_all", "--revert-to", "-"]
    )
    assert engine.image("opentrace/web:local") == OLD_WEB
    assert engine.read()["containers"]["worker"]["status"] == "running"


def test_an_unhealthy_container_fails_the_healthcheck(project, backend, fake_docker):
    env, _calls, engine = fake_docker
    state = engine.read()
    state["containers"]["worker"]["health"] = "unhealthy"
    engine.write(state)
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, env)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    assert "containers not healthy: worker: running, unhealthy" in " ".join(
        step_messages(backend, run_id, "healthcheck")
    )
    assert engine.image("opentrace/web:local") == OLD_WEB


def test_a_failed_build_points_the_tags_back_at_the_running_images(project, backend, fake_docker, tmp_path):
    env, calls, engine = fake_docker
    broken = tmp_path / "bin" / "docker"
    # This docker moves the tag (as a multi-image build that failed half-way would) and fails.
    broken.write_text(
        broken.read_text().replace(
            'elif args == ["up", "-d"]:',
            'if args[:1] == ["build"]:\n    sys.exit(17)\nelif args == ["up", "-d"]:',
        )
    )
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, env)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    assert engine.image("opentrace/web:local") == OLD_WEB
    assert [*COMPOSE, "up", "-d"] not in calls()


def test_the_local_preset_is_not_affected_by_docker(project, backend, fake_docker):
    env, calls, engine = fake_docker
    write_trigger(project, trigger_fields("1.2.0"))

    assert run_agent(project, backend, **env).returncode == 0
    assert calls() == []
    assert engine.requests == []


def test_the_rollback_image_of_the_release_before_is_removed_when_unused(project, backend, fake_docker):
    env, _calls, engine = fake_docker
    older, in_use = "sha256:" + "c3" * 32, "sha256:" + "d4" * 32
    state = engine.read()
    state["images"]["opentrace/web:rollback"] = older
    state["images"]["postgres:rollback"] = in_use
    state["containers"]["postgres"]["image"] = in_use  # a container still runs it
    engine.write(state)
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_DOCKER_NO_V2": "1"})

    assert done.returncode == 0, done.stderr
    assert engine.image("opentrace/web:rollback") == OLD_WEB
    assert engine.removed == [older]
    assert in_use not in engine.removed
    log = " ".join(" ".join(e.get("lines") or []) for e in backend.run_events(run_id))
    assert f"the older rollback image {older[7:19]}: removed" in log


def test_work_in_the_app_goes_to_a_one_off_container_when_no_web_container_runs(
    project, fake_docker, monkeypatch
):
    # A restore by hand stops the app first; `exec` into a stopped web would only fail.
    env, _calls, engine = fake_docker
    for name, value in agent_env(**env).items():
        monkeypatch.setenv(name, value)
    flags = {"preset": "compose", "project_dir": str(project.checkout), "data_dir": str(project.data_dir)}
    preset = make_preset(load_config(flags, os.environ, require_secret=False), lambda step, lines: None)
    assert preset.backup_tools().python_cmd == [*COMPOSE, "exec", "-T", "web", "python"]

    state = engine.read()
    state["containers"]["web"]["status"] = "exited"
    engine.write(state)
    one_off = [*COMPOSE, "run", "--rm", "--no-deps", "-T", "manage"]
    assert preset.backup_tools().python_cmd == [*one_off, "python"]


def test_a_downtime_release_drains_and_stops_web_before_migrating_and_deploy_starts_it_again(
    project, backend, fake_docker, tmp_path
):
    env, calls, engine = fake_docker
    engine.events_log = Path(env["FAKE_DOCKER_LOG"])
    document = json.loads(manifest_body("1.2.0"))
    document["releases"][0].update({"downtime": True, "downtime_seconds": 60})
    run_id = write_trigger(project, trigger_fields("1.2.0", manifest=json.dumps(document).encode()))

    done = run_compose(project, backend, env)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    log = calls()
    drain = log.index(["engine", "exec", "web", "sh", "-c", 'touch "$OPENTRACE_DRAIN_FILE"'])
    stop, remove = log.index(["engine", "stop", "web"]), log.index(["engine", "remove", "web"])
    migrate = log.index([*NEW_CODE, "migrate_all"])
    up = log.index([*COMPOSE, "up", "-d"])
    # Drained, stopped and removed before the migration; deploy (no proxy here: `up -d`) after it.
    assert drain < stop < remove < migrate < up
    assert [argv for argv in log if argv[:2] == ["engine", "stop"]] == [["engine", "stop", "web"]]
    assert "1 web container(s) stopped; the proxy serves the maintenance page" in " ".join(
        step_messages(backend, run_id, "migrate")
    )
    assert any(
        "(declared: about 60 s)" in message for message in step_messages(backend, run_id, "healthcheck")
    )
    assert project.served() == "1.2.0"


def test_a_release_without_declared_downtime_stops_no_container(project, backend, fake_docker):
    env, calls, engine = fake_docker
    engine.events_log = Path(env["FAKE_DOCKER_LOG"])
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    assert run_compose(project, backend, env).returncode == 0
    assert backend.final_state(run_id) == "succeeded"
    assert not [argv for argv in calls() if argv[0] == "engine"]


def test_a_downtime_release_that_fails_at_migrate_starts_the_previous_images_again(
    project, backend, fake_docker
):
    env, calls, engine = fake_docker
    engine.events_log = Path(env["FAKE_DOCKER_LOG"])
    document = json.loads(manifest_body("1.2.0"))
    document["releases"][0]["downtime"] = True
    run_id = write_trigger(project, trigger_fields("1.2.0", manifest=json.dumps(document).encode()))

    done = run_compose(project, backend, {**env, "FAKE_FAIL": "migrate:1.2.0"})

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    log = calls()
    stop = log.index(["engine", "stop", "web"])
    revert = log.index([*NEW_CODE, "migrate_all", "--revert-to", "-"])
    # Reverted, then the previous images are started again (no proxy here: `up -d`).
    assert stop < revert < log.index([*COMPOSE, "up", "-d"])
    assert engine.image("opentrace/web:local") == OLD_WEB
    assert project.served() == "1.1.5"
    rollback = step_messages(backend, run_id, "rollback")
    assert any("1.1.5 serves again after a downtime of" in message for message in rollback)
