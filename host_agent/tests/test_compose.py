"""The `compose` preset runs exactly the documented docker commands (SPEC §8).

`docker` here is a stand-in executable on PATH that records its argv: docker is an external
tool, and what the agent promises is the command lines it runs.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from host_agent.tests.conftest import agent_env, run_agent, trigger_fields, write_trigger

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
    if args[:1] == ["compose"]:
        if os.environ.get("FAKE_DOCKER_NO_V2"):
            print("docker: 'compose' is not a docker command.", file=sys.stderr)
            sys.exit(1)
        args = args[1:]
    if args[:2] == ["-f", "docker-compose.prod.yml"]:
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
    elif args == ["config", "--images"]:
        print("opentrace/web:local")
        print("opentrace/web:local")
        print("postgres:16.6-bookworm")
    elif args == ["up", "-d"]:
        shutil.copy("VERSION", os.path.join(data, "served"))
    elif args[:3] == ["exec", "-T", "postgres"] and "pg_dump" in args[-1]:
        sys.stdout.buffer.write(b"PGDMP a dump of the 1.1.5 database")
    elif args[:3] == ["exec", "-T", "postgres"] and "pg_restore" in args[-1]:
        with open(os.path.join(data, "restored-from"), "wb") as out:
            out.write(sys.stdin.buffer.read())
    elif args[:3] == ["exec", "-T", "web"] and "migrate_all" in args:
        version = open("VERSION").read().strip()
        if os.environ.get("FAKE_FAIL") == "migrate:" + version:
            print("migration failed", file=sys.stderr)
            sys.exit(1)
    """
)

COMPOSE = ["docker", "compose", "-f", "docker-compose.prod.yml"]
IN_DB = [*COMPOSE, "exec", "-T", "postgres", "sh", "-c"]
PG_DUMP = [*IN_DB, 'exec pg_dump -Fc --no-owner -U "$POSTGRES_USER" "$POSTGRES_DB"']
PG_RESTORE = [
    *IN_DB,
    "exec pg_restore --clean --if-exists --no-owner --single-transaction "
    '-U "$POSTGRES_USER" -d "$POSTGRES_DB"',
]


@pytest.fixture
def fake_docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "docker-compose"):
        path = bin_dir / name
        path.write_text(FAKE_DOCKER.format(python=sys.executable))
        path.chmod(0o755)
    log = tmp_path / "docker.log"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log)}

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return env, calls


def run_compose(project, backend, env: dict[str, str]):
    import subprocess

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
    ]
    return subprocess.run(
        argv, env=agent_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


def test_an_update_runs_the_documented_compose_commands(project, backend, fake_docker):
    env, calls = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, env)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert calls() == [
        ["docker", "compose", "version"],
        PG_DUMP,
        [*COMPOSE, "config", "--format", "json"],
        ["docker", "tag", "opentrace/web:local", "opentrace/web:rollback"],
        [*COMPOSE, "build"],
        [*COMPOSE, "up", "-d"],
        [*COMPOSE, "exec", "-T", "web", "python", "manage.py", "migrate_all"],
    ]
    backup = next((project.data_dir / "backups").iterdir())
    assert (backup / "database.pgdump").read_bytes() == b"PGDMP a dump of the 1.1.5 database"
    # The resolved compose configuration holds secrets: it is never put in the run's log.
    assert not [e for e in backend.run_events(run_id) if "s3cret" in json.dumps(e)]


def test_without_the_v2_plugin_docker_compose_v1_is_used(project, backend, fake_docker):
    env, calls = fake_docker
    write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_DOCKER_NO_V2": "1"})

    assert done.returncode == 0, done.stderr
    v1 = ["docker-compose", "-f", "docker-compose.prod.yml"]
    used = [c for c in calls() if c[0] == "docker-compose"]
    assert [*v1, "config", "--images"] in used
    assert [c for c in calls() if c[0] == "docker" and c[1] == "tag"] == [
        ["docker", "tag", "opentrace/web:local", "opentrace/web:rollback"],
        ["docker", "tag", "postgres:16.6-bookworm", "postgres:rollback"],
    ]
    assert [*v1, "build"] in used
    assert [*v1, "up", "-d"] in used


def test_a_failed_migration_redeploys_the_previous_images_without_a_rebuild(project, backend, fake_docker):
    env, calls = fake_docker
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_compose(project, backend, {**env, "FAKE_FAIL": "migrate:1.2.0"})

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    after_migrate = calls()[7:]
    assert after_migrate == [
        PG_RESTORE,
        [*COMPOSE, "config", "--format", "json"],
        ["docker", "tag", "opentrace/web:rollback", "opentrace/web:local"],
        [*COMPOSE, "up", "-d"],
    ]
    assert project.served() == "1.1.5"
    assert (project.data_dir / "restored-from").read_bytes() == b"PGDMP a dump of the 1.1.5 database"


def test_the_local_preset_is_not_affected_by_docker(project, backend, fake_docker):
    env, calls = fake_docker
    write_trigger(project, trigger_fields("1.2.0"))

    assert run_agent(project, backend, **env).returncode == 0
    assert calls() == []
