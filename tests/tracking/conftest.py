"""Fixtures for the tracking tests: a project, a buffer (spool, or Redis when configured),
and an embedded ClickHouse whose `events` table the shipped migrations created
(`testing/tracking.py`).

The engine is migrated once per session and emptied before each test that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from testing.tracking import emptied_engine, migrate_engine
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
    return migrate_engine(tmp_path_factory.mktemp("tracking-engine"))


@pytest.fixture
def engine(migrated_engine: Path) -> Iterator[Path]:
    """The migrated embedded engine, with no events in it."""
    with emptied_engine(migrated_engine) as path:
        yield path


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
