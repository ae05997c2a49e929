"""Maintenance windows (SPEC §12): when, in the install's time zone, an update may run by itself.

A window opens on each chosen day of the week at `start`, wall-clock time in `time_zone`,
and stays open `minutes` minutes of real (elapsed) time. Computed with `zoneinfo`, so a
window keeps its wall-clock start across daylight-saving changes: 03:00 Europe/Berlin is
01:00 UTC in summer and 02:00 UTC in winter. On the night the clocks go forward a start
inside the skipped hour (02:30) opens when that hour would have begun in the old offset,
which is the first valid instant after the gap (03:30 CEST); on the night they go back, an
ambiguous start opens at its first occurrence (PEP 495 `fold=0`). Pure functions: callers
pass `now`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SEARCH_DAYS = 8  # every weekday comes within a week; one more day covers a window open since yesterday


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday … 6 = Sunday
    start: time
    minutes: int
    time_zone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def length(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    def opening_on(self, day: date) -> datetime:
        """The aware UTC instant the window opens on local `day` (whatever its weekday)."""
        local = datetime.combine(day, self.start, tzinfo=self.zone)  # fold=0
        # A wall time in a DST gap does not exist: the UTC round trip moves it past the gap.
        return local.astimezone(UTC)

    def _openings(self, now: datetime, back: int) -> Iterator[tuple[datetime, datetime]]:
        if not self.days or self.minutes <= 0:
            return
        today = now.astimezone(self.zone).date()
        for offset in range(-back, _SEARCH_DAYS + 1):
            day = today + timedelta(days=offset)
            if day.weekday() in self.days:
                opens = self.opening_on(day)
                yield opens, opens + self.length

    def current(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The window open at `now` as (opens, closes) in UTC, or None."""
        for opens, closes in self._openings(now, back=2):
            if opens <= now < closes:
                return opens, closes
        return None

    def is_open(self, now: datetime) -> bool:
        return self.current(now) is not None

    def next_opening(self, now: datetime) -> datetime | None:
        """When the next window opens strictly after `now` (UTC); None when there is no window."""
        return next((opens for opens, _ in self._openings(now, back=0) if opens > now), None)

    def openings(self, now: datetime, count: int) -> list[datetime]:
        """The next `count` openings after `now`."""
        found: list[datetime] = []
        moment = now
        while len(found) < count:
            following = self.next_opening(moment)
            if following is None:
                break
            found.append(following)
            moment = following
        return found

    def describe(self) -> str:
        """ "Sunday, Wednesday at 03:00 for 2 h (Europe/Berlin)" for the policy page."""
        if not self.days:
            return "no maintenance window (no day chosen)"
        days = "every day" if len(self.days) == 7 else ", ".join(DAY_NAMES[d] for d in sorted(self.days))
        hours, minutes = divmod(self.minutes, 60)
        length = f"{hours} h" if not minutes else f"{hours} h {minutes} min" if hours else f"{minutes} min"
        return f"{days} at {self.start:%H:%M} for {length} ({self.time_zone})"


def local_label(instant: datetime, time_zone: str) -> str:
    """ "Sunday 2026-12-06 03:00 CET": how notices and pages name a window's start."""
    local = instant.astimezone(ZoneInfo(time_zone))
    return f"{DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {local.tzname()}"
