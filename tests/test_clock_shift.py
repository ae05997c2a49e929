"""The clock-shift plugin (tests/clock_shift.py) moves this process's clock and its children's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.clock_shift import find_libfaketime, parse_shift

ROOT = Path(__file__).resolve().parents[1]
YEAR = 365 * 86400

# Run inside a pytest started with the plugin: `real` is the caller's clock.
SHIFTED_TEST = """
import subprocess, sys, time
from datetime import UTC, date, datetime

REAL = {real}


def test_this_process_sees_the_shifted_clock():
    assert {low} < time.time() - REAL < {high}
    assert {low} < datetime.now(UTC).timestamp() - REAL < {high}


def test_a_child_process_sees_it_too_and_can_still_sleep():
    code = "import time; time.sleep(0.01); print(time.time())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = float(done.stdout)
    assert {low} < child - REAL < {high}


def test_a_date_written_today_is_in_the_past():
    assert date.fromtimestamp(REAL) < date.today()
"""


@pytest.mark.parametrize(
    ("text", "shift"),
    [
        ("365d", timedelta(days=365)),
        ("+2d", timedelta(days=2)),
        ("-30d", timedelta(days=-30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_a_shift_is_a_number_and_a_unit(text, shift):
    assert parse_shift(text) == shift


@pytest.mark.parametrize("text", ["", "1y", "365", "d", "1.5d", "one day", "365 d", "--1d"])
def test_a_malformed_shift_is_a_usage_error_naming_it(text):
    with pytest.raises(pytest.UsageError, match="expected a whole number and a unit"):
        parse_shift(text)


@pytest.mark.skipif(find_libfaketime() is None, reason="needs libfaketime: apt-get install faketime")
def pytest_in(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A separate pytest on `folder` without this project's configuration (no Django)."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(folder / "pytest.ini"),
            "-p",
            "no:django",
            *args,
            str(folder),
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_run_with_the_clock_a_year_ahead_moves_every_clock(tmp_path):
    real = time.time()
    (tmp_path / "test_shifted.py").write_text(
        SHIFTED_TEST.format(real=real, low=YEAR - 3600, high=YEAR + 600)
    )
    done = pytest_in(tmp_path, "-p", "no:cacheprovider", "-p", "tests.clock_shift", "--clock-shift=365d")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "clock shifted by 365d" in done.stdout


@pytest.mark.skipif(find_libfaketime() is None, reason="needs libfaketime: apt-get install faketime")
def test_a_pytest_started_by_a_shifted_run_is_shifted_once_not_twice(tmp_path):
    # What a pytest-xdist worker of a shifted run inherits: libfaketime already moves its clock.
    real = time.time()
    (tmp_path / "test_shifted.py").write_text(
        SHIFTED_TEST.format(real=real, low=YEAR - 3600, high=YEAR + 600)
    )
    inherited = {
        "LD_PRELOAD": find_libfaketime() or "",
        "FAKETIME": f"+{YEAR}",
        "OPENTRACE_TEST_CLOCK_SHIFTED": f"+{YEAR}",
    }

    done = pytest_in(
        tmp_path, "-p", "no:cacheprovider", "-p", "tests.clock_shift", "--clock-shift=365d", env=inherited
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


WORKER_TEST = """
import subprocess, sys, threading, time

REAL = {real}


def test_a_worker_is_shifted_and_its_timed_waits_end_on_time():
    assert {low} < time.time() - REAL < {high}
    started = time.monotonic()
    assert threading.Event().wait(0.2) is False
    waiter = threading.Thread(target=threading.Event().wait, args=(60,), daemon=True)
    waiter.start()
    waiter.join(timeout=0.2)
    assert time.monotonic() - started < 30


def test_a_process_a_worker_starts_is_shifted_too():
    child = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                           capture_output=True, text=True, check=True)
    assert {low} < float(child.stdout) - REAL < {high}
"""


@pytest.mark.skipif(find_libfaketime() is None, reason="needs libfaketime: apt-get install faketime")
def test_a_distributed_run_shifts_its_workers_whose_timed_waits_still_end(tmp_path):
    # Workers under libfaketime waited a year in `Event.wait(t)`: the monotonic deadline moved,
    # the kernel's clock did not. A worker moves its own clock as the controller does.
    real = time.time()
    (tmp_path / "test_worker.py").write_text(WORKER_TEST.format(real=real, low=YEAR - 3600, high=YEAR + 600))

    done = pytest_in(
        tmp_path, "-p", "no:cacheprovider", "-p", "tests.clock_shift", "--clock-shift=365d", "-n", "2"
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_a_run_with_a_malformed_shift_refuses_to_start(tmp_path):
    done = pytest_in(tmp_path, "-p", "no:cacheprovider", "-p", "tests.clock_shift", "--clock-shift=next year")
    assert done.returncode == 4  # pytest's usage error
    assert "clock shift 'next year'" in done.stderr
