"""Cancel and expiry with something hostile at the trigger path (found by bench/faults.py).

Whatever sits there — a FIFO, a directory, JSON nested past the parser's limit, a symbolic
or hard link to this run's own trigger — the backend's reader answers "not a trigger": the
caller neither hangs nor crashes, the run moves on per the usual rules (no agent can claim
such a file, so the run is cancelled or expired), and the file is left exactly as it was,
because the backend removes only a trigger it can prove holds its run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from testing.factories import make_run
from updates import actions, tasks, trigger
from updates.models import UpdateRun

pytestmark = pytest.mark.django_db

HANG_LIMIT = 5.0


class Hung(BaseException):
    """Not an OSError (TimeoutError is one), so no `except OSError` in the code can swallow it."""


@contextlib.contextmanager
def must_finish_within(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body blocks, e.g. opening a FIFO."""

    def timed_out(signum: int, frame: Any) -> None:
        raise Hung(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fingerprint(path: Path) -> tuple[Any, ...]:
    info = os.lstat(path)
    content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
    link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return (stat.S_IFMT(info.st_mode), info.st_ino, info.st_nlink, content, link)


def _fifo(path: Path, run: UpdateRun) -> None:
    os.mkfifo(path)


def _directory(path: Path, run: UpdateRun) -> None:
    path.mkdir()
    (path / "inside").write_text("keep")


def _deeply_nested(path: Path, run: UpdateRun) -> None:
    depth = 200_000
    path.write_bytes(b'{"run_id": "%s", "x": ' % str(run.pk).encode() + b"[" * depth + b"]" * depth + b"}")


def _not_utf8(path: Path, run: UpdateRun) -> None:
    path.write_bytes(b'{"run_id": "%s", "x": "\xff\xfe"}' % str(run.pk).encode())


def _symlink_to_this_runs_trigger(path: Path, run: UpdateRun) -> None:
    target = path.parent / "elsewhere.json"
    target.write_bytes(b'{"run_id": "%s"}' % str(run.pk).encode())
    path.symlink_to(target)


def _hardlink_to_this_runs_trigger(path: Path, run: UpdateRun) -> None:
    target = path.parent / "elsewhere.json"
    target.write_bytes(b'{"run_id": "%s"}' % str(run.pk).encode())
    os.link(target, path)


HOSTILE: dict[str, Callable[[Path, UpdateRun], None]] = {
    "fifo": _fifo,
    "directory": _directory,
    "deeply nested JSON": _deeply_nested,
    "invalid UTF-8": _not_utf8,
    "symlink": _symlink_to_this_runs_trigger,
    "hard link": _hardlink_to_this_runs_trigger,
}


@pytest.fixture(params=sorted(HOSTILE))
def planted(request) -> tuple[UpdateRun, Path, tuple[Any, ...]]:
    """A requested run (its own trigger never written) and a hostile file at the trigger path."""
    run = make_run()  # the bare row: no trigger of its own
    path = trigger.trigger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    HOSTILE[request.param](path, run)
    return run, path, _fingerprint(path)


def test_the_reader_answers_none_without_hanging(planted):
    _, path, before = planted
    with must_finish_within(HANG_LIMIT):
        assert trigger.read() is None
    assert _fingerprint(path) == before


def test_cancel_neither_hangs_nor_crashes_and_leaves_the_file(planted, superuser):
    run, path, before = planted
    with must_finish_within(HANG_LIMIT):
        actions.cancel_run(run, by=superuser)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert _fingerprint(path) == before


def test_expiry_neither_hangs_nor_crashes_and_leaves_the_file(planted):
    run, path, before = planted
    UpdateRun.objects.filter(pk=run.pk).update(requested_at=timezone.now() - timedelta(days=1))
    with must_finish_within(HANG_LIMIT):
        assert tasks.expire_unclaimed_runs() == 1
    run.refresh_from_db()
    assert run.status == "expired"
    assert _fingerprint(path) == before
