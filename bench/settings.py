"""Django settings for the benchmarks: OpenTrace's own, with two folders movable by environment.

BENCH_STATIC_ROOT: where `collectstatic` puts the files a DEBUG-off server needs (instead of
the checkout's shared `staticfiles/`). BENCH_CH_MIGRATIONS_DIR: a generated folder of
ClickHouse migrations (bench/chmigrations.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from opentrace.settings import *  # noqa: F403

if os.environ.get("BENCH_STATIC_ROOT"):
    STATIC_ROOT = Path(os.environ["BENCH_STATIC_ROOT"])
if os.environ.get("BENCH_CH_MIGRATIONS_DIR"):
    CLICKHOUSE_MIGRATIONS_DIR = Path(os.environ["BENCH_CH_MIGRATIONS_DIR"])
