"""Loaded by pytest (`-p tests.bootstrap`) before Django reads its settings.

Tests never touch the developer's `./data`: unless OPENTRACE_DATA_DIR is set, the whole
session runs in a fresh temporary data dir (SQLite, broker folder, embedded ClickHouse).
DATABASE_URL and CELERY_BROKER_URL, when set (as `.ci/run` does), point the suite at the
real PostgreSQL and Redis.

Under pytest-xdist (`make test`) every worker is a process of its own and gets its own data
dir, so no two workers open the same embedded ClickHouse path (chdb allows one process per
path) or SQLite file; pytest-django gives each worker its own test database
(`test_<name>_gw0`, ...), and `pytest_configure` below gives each its own Redis key prefix.
"""

from __future__ import annotations

import os
import tempfile

import pytest

# The xdist worker's id ("gw0", "gw1", ...), set before the worker loads this plugin.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# The data dir this module made, exported so that a worker can tell it apart from one the
# developer chose: the workers inherit the controller's environment.
_MADE_HERE = "OPENTRACE_TEST_DATA_DIR_MADE"


def _own_data_dir() -> None:
    """Point OPENTRACE_DATA_DIR at a folder of this process's own."""
    current = os.environ.get("OPENTRACE_DATA_DIR")
    if current is None or (WORKER and current == os.environ.get(_MADE_HERE)):
        made = tempfile.mkdtemp(prefix=f"opentrace-test-{WORKER + '-' if WORKER else ''}")
        os.environ["OPENTRACE_DATA_DIR"] = os.environ[_MADE_HERE] = made
    elif WORKER:  # the developer's own folder: one subfolder per worker inside it
        os.environ["OPENTRACE_DATA_DIR"] = os.path.join(current, WORKER)
        os.makedirs(os.environ["OPENTRACE_DATA_DIR"], exist_ok=True)


_own_data_dir()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")
# The suite runs as `make run` does (DEBUG on; settings default to off, as in production);
# tests/test_deploy_settings.py checks the production settings in processes of their own.
os.environ.setdefault("DEBUG", "true")

# chdb keeps about 15 descriptors for every engine path a process has opened, even after the
# client is closed (an upstream leak; production opens one path per process). The suite
# opens hundreds of fresh paths, so lift the soft descriptor limit to the hard one.
try:
    import resource

    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _wanted = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
    if _soft != resource.RLIM_INFINITY and _soft < _wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_wanted, _hard))
except (ImportError, ValueError, OSError):  # not fatal: the limit may already be enough
    pass


def redis_key_prefix() -> str:
    """Every Redis key (queues, bindings, unacked messages) of this process starts with this:
    workers sharing one Redis db never see, let alone consume, each other's tasks."""
    return f"opentrace-test-{WORKER or 'main'}:"


def pytest_configure(config: pytest.Config) -> None:
    # pytest-django has set Django up by now (in pytest_load_initial_conftests).
    from django.conf import settings

    if not settings.configured or not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return
    from opentrace.celery import app as celery_app

    settings.OPENTRACE_TRACKING_REDIS_KEY_PREFIX = redis_key_prefix()
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": redis_key_prefix()}
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    celery_app.conf.broker_transport_options = options
