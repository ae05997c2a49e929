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
