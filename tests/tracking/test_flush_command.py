"""`manage.py flush_events`: `--once` drains or says why not; one writer at a time."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.tracking.conftest import count, event, post
from tests.updates.factories import make_run
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


def test_a_second_flusher_waits_for_the_first(settings):
    first = WriterLock(settings.OPENTRACE_TRACKING_DIR / "flusher.lock")
    assert first.acquire(timeout=0)
    try:
        with pytest.raises(CommandError, match="another flusher holds"):
            call_command("flush_events", "--once", "--timeout", "0.5")
    finally:
        first.release()
    assert WriterLock(settings.OPENTRACE_TRACKING_DIR / "flusher.lock").acquire(timeout=0)
