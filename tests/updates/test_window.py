"""Maintenance windows in a zone that changes its clocks: the wall-clock start holds, the length is real."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from testing.policies import BERLIN, transitions
from updates.window import Window, local_label

EVERY_DAY = frozenset(range(7))
MICRO = timedelta(microseconds=1)


def utc(day, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), UTC)


def test_a_0300_window_keeps_its_wall_clock_start_across_both_changes():
    forward, back = transitions(BERLIN)
    window = Window(EVERY_DAY, time(3, 0), 60, BERLIN)

    # The night the clocks go forward: 03:00 CEST is 01:00 UTC (the evening before, 02:00 UTC).
    assert window.opening_on(forward - timedelta(days=1)) == utc(forward - timedelta(days=1), 2)
    assert window.opening_on(forward) == utc(forward, 1)
    # The night they go back: 03:00 CET is 02:00 UTC (the evening before, 01:00 UTC).
    assert window.opening_on(back - timedelta(days=1)) == utc(back - timedelta(days=1), 1)
    assert window.opening_on(back) == utc(back, 2)
    assert local_label(window.opening_on(back), BERLIN).endswith("03:00 CET")


def test_it_opens_at_its_start_and_closes_after_its_length_on_the_night_the_clocks_go_forward():
    forward, _ = transitions(BERLIN)
    window = Window(EVERY_DAY, time(3, 0), 60, BERLIN)
    opens = utc(forward, 1)

    assert not window.is_open(opens - MICRO)
    assert window.current(opens) == (opens, opens + timedelta(hours=1))
    assert window.is_open(opens + timedelta(minutes=59))
    assert not window.is_open(opens + timedelta(hours=1))
    # A fixed +01:00 offset would have opened it an hour late.
    assert window.next_opening(opens - timedelta(hours=3)) == opens


def test_a_start_in_the_skipped_hour_opens_right_after_the_gap():
    forward, _ = transitions(BERLIN)
    window = Window(EVERY_DAY, time(2, 30), 60, BERLIN)

    opens = window.opening_on(forward)

    assert opens == utc(forward, 1, 30)
    assert local_label(opens, BERLIN).endswith("03:30 CEST")


def test_an_ambiguous_start_opens_at_its_first_occurrence_and_lasts_real_minutes():
    _, back = transitions(BERLIN)
    window = Window(EVERY_DAY, time(2, 30), 90, BERLIN)

    opens = window.opening_on(back)

    assert opens == utc(back, 0, 30)  # 02:30 CEST, not 02:30 CET an hour later
    assert window.current(opens + timedelta(minutes=89)) == (opens, opens + timedelta(minutes=90))
    assert not window.is_open(opens + timedelta(minutes=90))  # 03:00 CET on the wall: 90 real minutes


def test_only_the_chosen_days_open_and_a_week_without_days_never_opens():
    forward, _ = transitions(BERLIN)
    sunday_only = Window(frozenset({forward.weekday()}), time(3, 0), 60, BERLIN)

    openings = sunday_only.openings(utc(forward, 1) - timedelta(days=1), 2)

    assert openings == [utc(forward, 1), utc(forward + timedelta(days=7), 1)]
    assert Window(frozenset(), time(3, 0), 60, BERLIN).next_opening(utc(forward, 0)) is None


def test_new_york_changes_on_its_own_dates():
    forward, back = transitions("America/New_York")
    window = Window(EVERY_DAY, time(3, 0), 60, "America/New_York")

    assert window.opening_on(forward) == utc(forward, 7)  # 03:00 EDT
    assert window.opening_on(back) == utc(back, 8)  # 03:00 EST
    assert window.opening_on(forward - timedelta(days=1)) == utc(forward - timedelta(days=1), 8)
