"""Django settings for bench/chmigrations.py: OpenTrace's own, with a generated migrations folder."""

from __future__ import annotations

import os
from pathlib import Path

from opentrace.settings import *  # noqa: F403

CLICKHOUSE_MIGRATIONS_DIR = Path(os.environ["BENCH_CH_MIGRATIONS_DIR"])
