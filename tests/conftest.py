"""Shared fixtures: named users, and markers that skip with a reason when a service is absent.

Run against real services by setting DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://...
(`.ci/run` does); without them the suite runs on SQLite and the embedded defaults, and tests
marked `postgres` or `redis` say why they were skipped.

`make test` runs the suite on several pytest-xdist workers; `tests/parallel.py` says which
tests stay together on one worker.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from hypothesis import settings as hypothesis_settings

from tests import parallel

# No per-example deadline: how fast code runs is measured by bench/, not by tests that fail
# on a loaded machine (the clock-shifted run under libfaketime took 268 ms for a 200 ms one).
hypothesis_settings.register_profile("opentrace", deadline=None)
hypothesis_settings.load_profile("opentrace")


def uses_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def uses_redis() -> bool:
    return settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://"))


# tryfirst: xdist's own implementation answers otherwise; optional: xdist may be absent.
@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") == "loadgroup":
        return parallel.make_scheduler(config, log)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres" in item.keywords and not uses_postgres():
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://..."))
        if "redis" in item.keywords and not uses_redis():
            item.add_marker(pytest.mark.skip(reason="needs Redis: set CELERY_BROKER_URL=redis://..."))


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root_admin", "root@example.com", "correct-horse-1")


@pytest.fixture
def staff_user(django_user_model):
    """Staff, but without any OpenTrace permission."""
    return django_user_model.objects.create_user(
        "viewer", "viewer@example.com", "correct-horse-2", is_staff=True
    )


@pytest.fixture
def plain_user(django_user_model):
    return django_user_model.objects.create_user("outsider", "outsider@example.com", "correct-horse-3")
