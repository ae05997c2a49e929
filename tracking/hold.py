"""When the flusher must not write to ClickHouse: while an update may still restore it.

An update's backup snapshots ClickHouse, and a failed update may restore that snapshot,
discarding every row written since. So while a run is requested or running
(`UpdateRun.active()`), accepted events stay in the buffer, where no restore reaches them
(`<DATA_DIR>/tracking` is outside the backup sets; Redis is not restored), and the flusher
writes them once the run has ended — after any restore.

A flush that was already under way when a run was requested could land after the snapshot;
`Hold.marker` lets the flusher notice that a run began during its flush (see
`tracking.flusher`). A database that cannot be asked holds too: not knowing is not "no run".
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DatabaseError
from django.db.models import Count, Max

from updates.models import UpdateRun


@dataclass(frozen=True)
class Hold:
    held: bool
    reason: str
    # (number of runs, newest request time): changes whenever a run is requested.
    marker: tuple[int, str] | None


def check() -> Hold:
    try:
        active = UpdateRun.active()
        seen = UpdateRun.objects.aggregate(runs=Count("pk"), newest=Max("requested_at"))
    except DatabaseError as exc:
        return Hold(True, f"the database cannot say whether an update is running ({exc})", None)
    marker = (int(seen["runs"] or 0), str(seen["newest"]))
    if active is not None:
        what = f"the update {active.from_version} → {active.to_version} (run {active.pk}) is {active.status}"
        return Hold(True, what, marker)
    return Hold(False, "", marker)
