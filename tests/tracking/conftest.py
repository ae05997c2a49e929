"""Fixtures for the tracking tests: a project, a buffer (spool, or Redis when configured),
and an embedded ClickHouse whose `events` table the shipped migrations created.

The engine is migrated once per session (in a child `manage.py clickhouse_migrate apply`,
as the agent runs it) and emptied before each test that uses it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings

from opentrace.clickhouse import client as clickhouse
from opentrace.config import ClickHouseTarget
from tests.helpers import ROOT, clean_env
from tracking import keys
from tracking.buffer import get_buffer
from tracking.buffer.redis import LIST_KEY, SUSPECT_KEY


@pytest.fixture(autouse=True)
def _tracking_dir(settings, tmp_path) -> None:
    """Every test gets its own spool, lock and status file, and a cold key cache."""
    settings.OPENTRACE_TRACKING_DIR = tmp_path / "tracking"
    settings.OPENTRACE_TRACKING_BUFFER = "spool"
    keys.clear_cache()


@pytest.fixture(scope="session")
def migrated_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tracking-engine")
    path = base / "clickhouse"
    env = clean_env(OPENTRACE_DATA_DIR=str(base / "data"), CLICKHOUSE_URL=f"chdb://{path}")
    result = subprocess.run(
        [sys.executable, "manage.py", "clickhouse_migrate", "apply"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture
def engine(migrated_engine: Path) -> Iterator[Path]:
    """The migrated embedded engine, with no events in it."""
    target = ClickHouseTarget(
        dsn=f"chdb://{migrated_engine}", database="opentrace", embedded=True, path=migrated_engine
    )
    with override_settings(CLICKHOUSE=target):
        with clickhouse.connect() as ch:
            ch.command("TRUNCATE TABLE opentrace.events")
        yield migrated_engine


def stored(sql: str = "SELECT count() FROM opentrace.events FINAL", **parameters: Any) -> list[tuple]:
    with clickhouse.connect() as ch:
        return ch.query(sql, parameters=parameters or None).result_rows


def count(final: bool = True) -> int:
    sql = "SELECT count() FROM opentrace.events FINAL" if final else "SELECT count() FROM opentrace.events"
    return stored(sql)[0][0]


def event_ids() -> list[str]:
    return sorted(str(row[0]) for row in stored("SELECT event_id FROM opentrace.events"))


@pytest.fixture
def project(db):
    from tracking.models import Project

    return Project.objects.create(name="Shop")


@pytest.fixture(params=["spool", pytest.param("redis", marks=pytest.mark.redis)])
def buffer_kind(request, settings) -> Iterator[str]:
    """Run the test once with the spool and once with the Redis list (when Redis is configured)."""
    if request.param == "redis":
        import redis

        url = django_settings.CELERY_BROKER_URL
        settings.OPENTRACE_TRACKING_BUFFER = url
        connection = redis.Redis.from_url(url)
        keys = [django_settings.OPENTRACE_TRACKING_REDIS_KEY_PREFIX + k for k in (LIST_KEY, SUSPECT_KEY)]
        connection.delete(*keys)
        yield "redis"
        connection.delete(*keys)
        connection.close()
    else:
        yield "spool"


@pytest.fixture
def buffer(buffer_kind):
    return get_buffer()


def recent(seconds_ago: float = 60.0) -> str:
    """An ISO 8601 time shortly before now (events older than the table's TTL would vanish)."""
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(n: int = 0, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event": "pageview",
        "distinct_id": f"user-{n}",
        "timestamp": recent(),
        "properties": {"path": f"/page/{n}", "n": n},
    }
    value.update(overrides)
    return value


def post(client: Client, body: Any, key: str | None, **extra: Any):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {} if key is None else {"HTTP_X_OPENTRACE_KEY": key}
    return client.post("/api/track", data, content_type="application/json", **headers, **extra)
