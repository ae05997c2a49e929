"""What the confirmation page says an install will cost here: space, time and downtime.

- Space: the backup the agent makes first (about the data dir without its backups, plus the
  PostgreSQL database when it lives elsewhere: what the agent's own free-space check
  counts, `host_agent.backup.check_free_space`) plus an allowance for the build (a new
  image, or the new checkout's dependencies), against what is free on the data dir's disk.
- Time: the median duration of this install's successful runs, or "first update".
- Downtime: what the release declares in the registry (`downtime`, SPEC §7).
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection

from contract.registry import Release
from updates.models import RunStatus, UpdateRun

BUILD_ALLOWANCE_BYTES = 1024**3  # an image's new layers, or a virtualenv's new packages
MARGIN_BYTES = 128 * 1024**2  # the agent's own margin on top of the backup (host_agent.backup)
SKIPPED = ("backups",)
HISTORY = 20  # the most recent successful runs the median is taken over


@dataclass(frozen=True)
class Estimate:
    backup_bytes: int
    build_bytes: int
    free_bytes: int | None  # None when the disk could not be asked
    median_duration: timedelta | None  # None: no successful update here yet
    runs_counted: int
    downtime: bool

    @property
    def needed_bytes(self) -> int:
        return self.backup_bytes + self.build_bytes + MARGIN_BYTES

    @property
    def enough_space(self) -> bool | None:
        return None if self.free_bytes is None else self.free_bytes >= self.needed_bytes


def _tree_size(root: Path, skip: tuple[str, ...]) -> int:
    total = 0
    for base, dirs, files in os.walk(root):
        if Path(base) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            try:
                info = os.lstat(os.path.join(base, name))
            except OSError:
                continue  # removed while we walked
            total += info.st_size
    return total


def database_bytes() -> int:
    """PostgreSQL's own size of this database (0 on SQLite, whose file is in the data dir)."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


def median_duration() -> tuple[timedelta | None, int]:
    runs = (
        UpdateRun.objects.filter(
            status=RunStatus.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:HISTORY]
    )
    durations = [(end - start).total_seconds() for start, end in runs if start and end]
    if not durations:
        return None, 0
    return timedelta(seconds=statistics.median(durations)), len(durations)


def estimate(release: Release) -> Estimate:
    data_dir = Path(settings.DATA_DIR)
    backup = _tree_size(data_dir, SKIPPED) + database_bytes() if data_dir.is_dir() else database_bytes()
    try:
        free: int | None = shutil.disk_usage(data_dir).free
    except OSError:
        free = None
    duration, counted = median_duration()
    return Estimate(backup, BUILD_ALLOWANCE_BYTES, free, duration, counted, release.downtime)


def format_bytes(value: int | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"
