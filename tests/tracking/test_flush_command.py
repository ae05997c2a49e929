"""`manage.py flush_events`: `--once` drains or says why not; one writer at a time."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from testing.factories import make_run
from testing.tracking import count, event, post
from tracking.buffer import get_buffer
from tracking.lock import WriterLock

pytestmark = pytest.mark.django_db


def test_once_drains_the_buffer_and_reports_it(client, project, engine, settings):
    for start in range(0, 300, 100):
        post(client, {"events": [event(n) for n in range(start, start + 100)]}, project.write_key)
    out = StringIO()
    call_command("flush_events", "--once", stdout=out)
    assert "flushed 300 event(s); the buffer is empty" in out.getvalue()
    assert count(final=False) == 300
    state = json.loads((settings.OPENTRACE_TRACKING_DIR / "flusher.json").read_text())
    assert (state["state"], state["backlog"]) == ("idle", 0)


def test_once_gives_up_with_the_reason_while_an_update_holds(client, project, engine):
    make_run()
    post(client, {"events": [event(1)]}, project.write_key)
    with pytest.raises(
        CommandError, match=r"flushed 0 event\(s\), then gave up: held: the update 1.1.5 → 1.2.0"
    ):
        call_command("flush_events", "--once", "--timeout", "1")
    assert count(final=False) == 0


def test_once_beside_a_running_flusher_waits_for_it_instead_of_writing(client, project, engine, settings):
    running = WriterLock(settings.OPENTRACE_TRACKING_DIR / "flusher.lock")
    assert running.acquire(timeout=0)  # as `make run`'s flusher holds it
    try:
        post(client, {"events": [event(1)]}, project.write_key)
        with pytest.raises(
            CommandError, match=r"has not emptied the buffer within 1 s \(\d+ still buffered\)"
        ):
            call_command("flush_events", "--once", "--timeout", "1")
        assert count(final=False) == 0  # a second writer never wrote
        batch = get_buffer().read(100)
        get_buffer().commit(batch)  # the running flusher's work, done here
        out = StringIO()
        call_command("flush_events", "--once", "--timeout", "5", stdout=out)
        assert "the running flusher has emptied the buffer" in out.getvalue()
    finally:
        running.release()
    assert WriterLock(settings.OPENTRACE_TRACKING_DIR / "flusher.lock").acquire(timeout=0)
