"""Celery beat, driven by the test's clock: the app's real beat schedule, ticked by hand.

`Beat` builds celery's own `beat.Scheduler` from `CELERY_BEAT_SCHEDULE` (only the entries
asked for: the registry check would fetch from the network) and, with time-machine moving
the clock, calls `tick()` the way `celery beat` does; with `task_always_eager` the due tasks
run in this process. Nothing sleeps: the clock jumps from one beat interval to the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from celery import beat

import updates.tasks  # noqa: F401 - registers the tasks beat names, so they run here, eagerly
from opentrace.celery import app as celery_app


class _Scheduler(beat.Scheduler):
    def apply_entry(self, entry: beat.ScheduleEntry, producer: Any = None) -> None:
        # celery's logs a failing task and goes on; a test must see the failure.
        self.apply_async(entry, producer=producer, advance=False)


@contextlib.contextmanager
def eager_celery(*, propagate: bool) -> Iterator[Any]:
    """Tasks run in this process when enqueued, until the block ends.

    With `propagate`, a task's error reaches the caller. Without it, retries run for real
    (Celery re-applies the task with retries + 1), only the countdown is not waited for; the
    mail and channel tests need that (Celery would propagate the Retry too) and check results
    and the notice log instead."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = True, propagate
    try:
        yield celery_app
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


class Beat:
    """Needs `task_always_eager` (`eager_celery(propagate=True)`, the `eager_tasks` fixture)."""

    def __init__(self, traveller: Any, *names: str) -> None:
        assert celery_app.conf.task_always_eager, "beat's tasks would go to the broker"
        self.traveller = traveller
        for name in names:
            # An unregistered task would be sent to the broker instead of running here.
            assert celery_app.conf.beat_schedule[name]["task"] in celery_app.tasks, name
        self.scheduler = _Scheduler(app=celery_app, lazy=True)
        self.scheduler.merge_inplace({name: celery_app.conf.beat_schedule[name] for name in names})
        self.before_tick: Callable[[datetime], None] | None = None

    def now(self) -> datetime:
        return celery_app.now()

    def tick(self) -> float:
        if self.before_tick is not None:
            self.before_tick(self.now())
        return self.scheduler.tick()

    def run_until(self, moment: datetime, step: timedelta = timedelta(seconds=60)) -> None:
        """Tick every `step` of the test's clock up to `moment` (beat's every-minute entries fire)."""
        self.tick()
        while self.now() + step <= moment:
            self.traveller.shift(step)
            self.tick()
        self.traveller.move_to(moment)
        self.tick()
