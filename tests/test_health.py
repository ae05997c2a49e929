"""GET /healthz (SPEC §11): 200 with four checks ok, or 503 naming what fails.

`/healthz/live` and `/healthz/ready` (the proxy's): alive, and ready unless draining.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from opentrace import health
from opentrace.clickhouse.catalog import DEFAULT_DIRECTORY
from opentrace.config import ClickHouseTarget
from opentrace.version import running_version
from testing.helpers import ROOT, clean_env, closed_port, healthz_in_child, manage

pytestmark = pytest.mark.django_db

NEW_CLICKHOUSE_MIGRATION = """\
CREATE TABLE IF NOT EXISTS ${db}.health_probe (id UInt64) ENGINE = MergeTree ORDER BY id;
-- down
DROP TABLE IF EXISTS ${db}.health_probe;
"""


def next_migration(folder: Path) -> Path:
    return folder / f"{len(list(folder.glob('*.sql'))) + 1:04d}_health_probe.sql"


@pytest.fixture(autouse=True)
def release(tmp_path: Path) -> Iterator[Path]:
    """An engine of this test's own with the shipped ClickHouse migrations applied, from a
    copy of their folder (a test adds files to it), and the release's migrations read afresh."""
    folder = tmp_path / "ch-migrations"
    shutil.copytree(DEFAULT_DIRECTORY, folder)
    path = tmp_path / "clickhouse"
    target = ClickHouseTarget(dsn=f"chdb://{path}", database="opentrace", embedded=True, path=path)
    with override_settings(
        CLICKHOUSE=target, CLICKHOUSE_CLUSTER=None, CLICKHOUSE_MIGRATIONS_DIR=folder, HEALTH_CACHE_SECONDS=0
    ):
        call_command("clickhouse_migrate", "apply", verbosity=0)
        health.release_migrations.cache_clear()
        try:
            yield folder
        finally:
            health.release_migrations.cache_clear()


def test_it_reports_ok_with_the_running_version(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "version": running_version(),
        "checks": {"database": "ok", "broker": "ok", "clickhouse": "ok", "migrations": "ok"},
    }
    assert running_version() == (ROOT / "VERSION").read_text().strip()
    assert "no-cache" in response["Cache-Control"]


def test_it_needs_no_authentication_and_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


def test_an_unreachable_broker_is_named(client):
    url = f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0"
    with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"] == "error"
    assert body["checks"]["database"] == "ok"
    assert "hunter2-secret" not in response.content.decode()


def test_a_missing_filesystem_broker_folder_is_named(client, tmp_path):
    missing = str(tmp_path / "gone")
    options = {"data_folder_in": missing, "data_folder_out": missing, "processed_folder": missing}
    with override_settings(CELERY_BROKER_URL="filesystem://", CELERY_BROKER_TRANSPORT_OPTIONS=options):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


def test_an_unreachable_clickhouse_server_is_named_without_its_password(client):
    target = ClickHouseTarget(
        dsn=f"http://default:pa55word-xyz@127.0.0.1:{closed_port()}", database="opentrace", embedded=False
    )
    with override_settings(CLICKHOUSE=target):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["clickhouse", "migrations"]
    assert "pa55word-xyz" not in response.content.decode()
    # Checks are named, never explained: the driver's message (with the host) is in the log.
    assert "errors" not in body
    assert "127.0.0.1" not in response.content.decode()


HOLD_ENGINE = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
client.command("SELECT 1")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
client.close()
"""


def test_an_embedded_engine_held_by_another_process_is_a_named_503(client, tmp_path):
    path = tmp_path / "ch"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_ENGINE, f"chdb://{path}", "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        target = ClickHouseTarget(dsn=f"chdb://{path}", database="opentrace", embedded=True, path=Path(path))
        started = time.monotonic()
        with override_settings(CLICKHOUSE=target):
            response = client.get("/healthz")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert response.status_code == 503
    assert response.json()["failing"] == ["clickhouse", "migrations"]
    assert 2.5 <= waited < 15


def test_a_database_that_is_down_is_named(tmp_path):
    env = clean_env(
        OPENTRACE_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"postgres://opentrace:db-secret-77@127.0.0.1:{closed_port()}/opentrace",
    )
    status, body = healthz_in_child(env)
    assert status == 503
    assert body["checks"]["database"] == "error"
    assert body["checks"]["migrations"] == "error"
    assert set(body["failing"]) == {"database", "migrations"}
    assert body["checks"]["broker"] == "ok"
    assert "db-secret-77" not in str(body)


def test_an_unapplied_migration_is_named(tmp_path):
    env = clean_env(OPENTRACE_DATA_DIR=str(tmp_path))
    result = manage("migrate", "auth", "--noinput", env=env)
    assert result.returncode == 0, result.stderr
    status, body = healthz_in_child(env)
    assert status == 503
    assert body["failing"] == ["migrations"]
    assert set(body) == {"status", "version", "checks", "failing"}

    result = manage("migrate_all", env=env)
    assert result.returncode == 0, result.stderr
    status, body = healthz_in_child(env)
    assert status == 200, body


def test_a_pending_clickhouse_migration_is_not_ok(client, release):
    next_migration(release).write_text(NEW_CLICKHOUSE_MIGRATION)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["migrations"]

    call_command("clickhouse_migrate", "apply", verbosity=0)
    assert client.get("/healthz").status_code == 200


def test_the_next_releases_files_on_disk_do_not_make_the_running_release_unhealthy(client, release):
    # The running release read its migrations when it started; then an update checks out
    # the next release's files, Django's and ClickHouse's, before they are applied.
    assert client.get("/healthz").status_code == 200
    next_migration(release).write_text(NEW_CLICKHOUSE_MIGRATION)
    assert client.get("/healthz").status_code == 200

    # A process of the new release, started now, sees them pending.
    health.release_migrations.cache_clear()
    assert client.get("/healthz").json()["failing"] == ["migrations"]


def test_a_schema_ahead_of_the_release_is_fine(client, release):
    # What the old release sees once the new release's migrations are applied (SPEC §11).
    MigrationRecorder(connection).record_applied("updates", "9999_from_the_next_release")
    next_migration(release).write_text(NEW_CLICKHOUSE_MIGRATION)
    call_command("clickhouse_migrate", "apply", verbosity=0)
    for added in release.glob("*_health_probe.sql"):
        added.unlink()
    health.release_migrations.cache_clear()

    response = client.get("/healthz")
    assert response.status_code == 200, response.json()


def test_a_process_is_not_ready_before_every_check_passed_once(client, monkeypatch):
    # A new release's web container: the proxy must not send it traffic while it is unhealthy.
    monkeypatch.setattr(health, "healthy_once", threading.Event())
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}, HEALTH_CACHE_SECONDS=0):
        ready = client.get("/healthz/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "starting", "version": running_version(), "failing": ["broker"]}
    with override_settings(HEALTH_CACHE_SECONDS=0):
        assert client.get("/healthz/ready").status_code == 200


def test_liveness_and_readiness_answer_without_checking_dependencies(client):
    assert client.get("/healthz").status_code == 200  # healthy once: from now on, ready unless draining
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}):
        assert client.get("/healthz").status_code == 503
        live, ready = client.get("/healthz/live"), client.get("/healthz/ready")
    assert (live.status_code, live.json()["status"]) == (200, "alive")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "version": running_version()})
    assert "no-cache" in ready["Cache-Control"]


def test_a_draining_web_process_is_not_ready_but_still_alive_and_serving(client, tmp_path):
    drain = tmp_path / "draining"
    with override_settings(OPENTRACE_DRAIN_FILE=str(drain)):
        assert client.get("/healthz/ready").status_code == 200
        drain.touch()
        assert client.get("/healthz/ready").status_code == 503
        assert client.get("/healthz/ready").json()["status"] == "draining"
        assert client.get("/healthz/live").status_code == 200
        # In-flight and late requests are still served while the proxy moves traffic away.
        assert client.get("/healthz").status_code == 200


def test_a_failure_is_not_kept_as_long_as_a_pass(client):
    """A recovering dependency (or a new release waiting to be admitted) is seen again at once
    when the retry interval is over, however long passing results are kept."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(HEALTH_CACHE_SECONDS=60, HEALTH_RETRY_SECONDS=0):
        with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}):
            assert client.get("/healthz").status_code == 503
        assert client.get("/healthz").status_code == 200  # run again: the failure was not kept
        with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}):
            assert client.get("/healthz").status_code == 200  # the pass is kept


@pytest.mark.parametrize(
    ("url", "kept"), [("chdb://{tmp}/ch", "5.0 1.0"), ("http://127.0.0.1:8123", "1.0 1.0")]
)
def test_passing_results_are_kept_longer_with_the_embedded_engine(tmp_path, url, kept):
    env = clean_env(CLICKHOUSE_URL=url.format(tmp=tmp_path), OPENTRACE_DATA_DIR=str(tmp_path / "data"))
    code = "from django.conf import settings as s; print(s.HEALTH_CACHE_SECONDS, s.HEALTH_RETRY_SECONDS)"
    done = manage("shell", "-c", code, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == kept.split()


def test_results_are_shared_for_a_moment_between_callers(client):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(HEALTH_CACHE_SECONDS=60):
        assert client.get("/healthz").status_code == 200
        with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}):
            assert client.get("/healthz").status_code == 200  # the run of a moment ago
    with override_settings(CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={}):
        assert client.get("/healthz").status_code == 503
