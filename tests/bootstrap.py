"""Loaded by pytest (`-p tests.bootstrap`) before Django reads its settings.

Tests never touch the developer's `./data`: unless OPENTRACE_DATA_DIR is set, the whole
session runs in a fresh temporary data dir (SQLite, broker folder, embedded ClickHouse).
DATABASE_URL and CELERY_BROKER_URL, when set (as `.ci/run` does), point the suite at the
real PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import tempfile

if "OPENTRACE_DATA_DIR" not in os.environ:
    os.environ["OPENTRACE_DATA_DIR"] = tempfile.mkdtemp(prefix="opentrace-test-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")

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
