"""GET /healthz (SPEC §11): 200 with four checks ok, or 503 naming what fails."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import override_settings

from opentrace.config import ClickHouseTarget
from opentrace.version import running_version
from tests.helpers import ROOT, clean_env, closed_port, healthz_in_child, manage

pytestmark = pytest.mark.django_db


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
    assert body["failing"] == ["clickhouse"]
    assert "ClickHouseUnavailable" in body["errors"]["clickhouse"]
    assert "pa55word-xyz" not in response.content.decode()


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
    assert response.json()["failing"] == ["clickhouse"]
    assert "ClickHouseBusy" in response.json()["errors"]["clickhouse"]
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
    assert "unapplied migration" in body["errors"]["migrations"]

    result = manage("migrate", "--noinput", env=env)
    assert result.returncode == 0, result.stderr
    status, body = healthz_in_child(env)
    assert status == 200, body
