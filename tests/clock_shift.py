"""Run tests with the clock moved: `-p tests.clock_shift --clock-shift=365d` (`make test-clock-shift`).

A test that hides a wall-clock literal (an `expires` of "2026-12-31", an event stamped with
the day it was written) passes on the day it is written and fails some day later, by
itself. Run with the clock a year ahead, it fails the day it is written instead.

The shift is a timedelta like `365d`, `-30d`, `12h`, `90m` or `45s`, given with
`--clock-shift` or the environment variable OPENTRACE_TEST_CLOCK_SHIFT. It moves:

- this process's clock, with time-machine (ticking): `time.time()`, `datetime.now()`,
  `timezone.now()` in the tests, in Django, in the live server and SMTP threads;
- the clock of every process the tests start (the host agent, git, a fake app), with
  libfaketime preloaded through the environment they inherit. Apt's `faketime` package
  ships it; the run refuses to start without it rather than shifting only half the clocks.

Durations are unchanged (timeouts and sleeps behave as usual). The servers the suite does
not start (PostgreSQL, Redis) keep the real clock: the code under test reads time in
Python, not from the database.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ENV = "OPENTRACE_TEST_CLOCK_SHIFT"
# Set for the processes a shifted run starts (their clock is moved by libfaketime).
SHIFTED = "OPENTRACE_TEST_CLOCK_SHIFTED"
_SHIFT = re.compile(r"^([+-]?)([0-9]{1,6})([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Debian's libfaketime (apt-get install faketime); the MT build is safe with threads.
LIBFAKETIME = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
)
_TRAVELLER = pytest.StashKey[Any]()


def parse_shift(text: str) -> timedelta:
    match = _SHIFT.match(text.strip())
    if not match:
        raise pytest.UsageError(
            f"clock shift {text!r}: expected a whole number and a unit, e.g. 365d, -30d, 12h, 90m or 45s"
        )
    sign, amount, unit = match.groups()
    shift = timedelta(**{_UNITS[unit]: int(amount)})
    return -shift if sign == "-" else shift


def find_libfaketime() -> str | None:
    return next((path for path in LIBFAKETIME if Path(path).is_file()), None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-shift",
        default=os.environ.get(ENV, ""),
        help=f"run with the clock moved by this much, e.g. 365d (default: ${ENV})",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before any conftest or test module is imported: a module-level "a year from now"
    # must already see the shifted clock.
    config = early_config
    text = config.known_args_namespace.clock_shift
    if not text:
        return
    shift = parse_shift(text)
    offset = f"{int(shift.total_seconds()):+d}"
    if _preloaded():
        # Started by a shifted test (a nested pytest): libfaketime, inherited with the
        # environment, already moves this process's clock.
        config.stash[_TRAVELLER] = None
        return
    library = find_libfaketime()
    if library is None:
        raise pytest.UsageError(
            "--clock-shift needs libfaketime for the processes the tests start: apt-get install faketime"
        )
    import time_machine

    traveller = time_machine.travel(datetime.now(UTC) + shift, tick=True)
    traveller.start()
    config.stash[_TRAVELLER] = traveller
    os.environ["FAKETIME"] = offset
    os.environ[SHIFTED] = offset
    # Monotonic clocks move too in the children (durations are unchanged): with only the
    # real-time clock moved, libfaketime's clock_nanosleep makes Python's time.sleep() fail
    # with EINVAL.
    os.environ.pop("FAKETIME_DONT_FAKE_MONOTONIC", None)
    if _xdist_controller(config):
        # Its workers are pytest processes too: each moves its own clock with time-machine as
        # this one does, and preloads libfaketime only for the processes its tests start.
        # A worker under libfaketime would wait a year in every timed wait (`Event.wait(t)`,
        # `Thread.join(t)`): the lock's monotonic deadline is moved, the kernel's clock not.
        return
    # Children inherit these: the agent, git and the fake apps see the same shifted clock.
    preload = os.environ.get("LD_PRELOAD", "")
    os.environ["LD_PRELOAD"] = f"{library}:{preload}" if preload else library


def _preloaded() -> bool:
    try:
        return "libfaketime" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def _xdist_controller(config: pytest.Config) -> bool:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    return bool(getattr(config.known_args_namespace, "numprocesses", None))


def pytest_report_header(config: pytest.Config) -> str | None:
    if _TRAVELLER not in config.stash:
        return None
    shift = config.known_args_namespace.clock_shift
    return f"clock shifted by {shift}: now is {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def pytest_unconfigure(config: pytest.Config) -> None:
    traveller = config.stash.get(_TRAVELLER, None)
    if traveller is not None:
        traveller.stop()
