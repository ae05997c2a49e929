"""The one writer: moves buffered records into ClickHouse in batches (`Flusher.run_once()`).

One step, in this order, each failure leaving the buffer as it was:

1. the hold (`tracking.hold`): while an update is requested or running, do nothing;
2. read the oldest records (up to `max_events` events);
3. `mark_suspect()` — from here until the commit, a crash means "maybe inserted";
4. open ClickHouse with a short busy wait (the embedded engine admits one process: when a
   migration, a snapshot or the web's health check holds it, this step backs off and the
   loop tries again later); for a suspect batch, drop the events ClickHouse already has;
   insert the rest, first copy of each `(project, event_id)` only;
5. look at the hold again: if a run was requested since step 1, the insert may have landed
   after that run's snapshot, so the batch stays in the buffer (still suspect) and is
   written again, deduplicated, once the run has ended — after any restore;
6. `commit()`: the buffer forgets the batch.

`manage.py flush_events` runs this in a loop under the writer lock (`tracking.writer_lock`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from opentrace.clickhouse import client as clickhouse
from tracking import hold as holds
from tracking import quarantine, store
from tracking.buffer import Buffer, BufferUnavailable, get_buffer

logger = logging.getLogger(__name__)

MAX_EVENTS = 20_000
BUSY_TIMEOUT = 1.0


@dataclass(frozen=True)
class Outcome:
    """What one step did. `state`: idle, flushed, held, kept (see step 5) or backoff."""

    state: str
    events: int = 0
    detail: str = ""

    @property
    def more(self) -> bool:
        """Worth another step right away (there may be more to flush)."""
        return self.state == "flushed"


class Flusher:
    def __init__(
        self,
        buffer: Buffer | None = None,
        *,
        max_events: int = MAX_EVENTS,
        busy_timeout: float = BUSY_TIMEOUT,
        hold: Callable[[], holds.Hold] = holds.check,
        rejected_dir: Path | None = None,
    ) -> None:
        self.buffer = buffer if buffer is not None else get_buffer()
        self.max_events = max_events
        self.busy_timeout = busy_timeout
        self.hold = hold
        self.rejected_dir = rejected_dir or settings.OPENTRACE_TRACKING_DIR / "rejected"

    def run_once(self) -> Outcome:
        before = self.hold()
        if before.held:
            return Outcome("held", detail=before.reason)
        try:
            batch = self.buffer.read(self.max_events)
            if batch is None:
                return Outcome("idle")
            if batch.corrupt:
                kept = quarantine.keep(self.rejected_dir, batch.corrupt)
                logger.error("kept %d undecodable buffered record(s) in %s", len(batch.corrupt), kept)
            rows = store.rows(batch.records)
            if rows:
                self.buffer.mark_suspect(batch)
                with clickhouse.connect(busy_timeout=self.busy_timeout) as ch:
                    if batch.suspect:
                        present = store.existing_ids(ch, rows)
                        rows = [row for row in rows if (row[0], row[1]) not in present]
                        if present:
                            logger.info("%d event(s) of a re-read batch were already stored", len(present))
                    store.insert(ch, rows)
        except (clickhouse.ClickHouseError, BufferUnavailable) as exc:
            return Outcome("backoff", detail=str(exc))
        except Exception as exc:
            # The table missing before migrations ran, a server error: the batch waits.
            logger.exception("flushing tracked events failed; the batch stays buffered")
            return Outcome("backoff", detail=f"{type(exc).__name__}: {exc}"[:500])
        after = self.hold()
        if after.held or after.marker != before.marker:
            logger.warning(
                "an update began while %d event(s) were being written; they stay buffered and are "
                "written again, deduplicated, after it ends",
                len(rows),
            )
            return Outcome("kept", events=len(rows), detail=after.reason or "an update was requested")
        try:
            self.buffer.commit(batch)
        except BufferUnavailable as exc:
            return Outcome("backoff", events=len(rows), detail=str(exc))
        return Outcome("flushed", events=len(rows))


class Backoff:
    """Exponential delay with jitter between failed steps: 0.5 s doubling up to `ceiling`."""

    def __init__(self, *, floor: float = 0.5, ceiling: float = 15.0) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(self.ceiling, max(self.floor, self.delay * 2))
        return self.delay * random.uniform(0.5, 1.0)

    def succeeded(self) -> None:
        self.delay = 0.0
