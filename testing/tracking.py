"""The tracking tests' harness: an embedded ClickHouse the shipped migrations created, events
to send, and reads of what was stored.

`migrate_engine` migrates an engine (in a child `manage.py clickhouse_migrate apply`, as the
agent runs it; the fixtures do it once per session); `emptied_engine` points the settings at
it with no events in it. `tests/tracking/conftest.py` wraps them as fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.test import Client, override_settings

from opentrace.clickhouse import client as clickhouse
from opentrace.config import ClickHouseTarget
from testing.clickhouse import query
from testing.helpers import clean_env, manage


def migrate_engine(base: Path) -> Path:
    """An embedded engine in `base`/clickhouse, migrated by the shipped migrations."""
    path = base / "clickhouse"
    env = clean_env(OPENTRACE_DATA_DIR=str(base / "data"), CLICKHOUSE_URL=f"chdb://{path}")
    result = manage("clickhouse_migrate", "apply", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@contextmanager
def emptied_engine(migrated_engine: Path) -> Iterator[Path]:
    """The migrated embedded engine, with no events in it, as the settings' ClickHouse."""
    target = ClickHouseTarget(
        dsn=f"chdb://{migrated_engine}", database="opentrace", embedded=True, path=migrated_engine
    )
    with override_settings(CLICKHOUSE=target):
        with clickhouse.connect() as ch:
            ch.command("TRUNCATE TABLE opentrace.events")
        yield migrated_engine


def stored(
    sql: str = "SELECT count() FROM opentrace.events FINAL", **parameters: Any
) -> Sequence[Sequence[Any]]:
    return query(sql, **parameters)


def count(final: bool = True) -> int:
    sql = "SELECT count() FROM opentrace.events FINAL" if final else "SELECT count() FROM opentrace.events"
    return stored(sql)[0][0]


def event_ids() -> list[str]:
    return sorted(str(row[0]) for row in stored("SELECT event_id FROM opentrace.events"))


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
    headers: dict[str, Any] = {} if key is None else {"HTTP_X_OPENTRACE_KEY": key}
    return client.post("/api/track", data, content_type="application/json", **headers, **extra)
