"""A flusher that dies mid-batch — after its insert but before the buffer forgot the batch,
or halfway through the insert — leaves every event in ClickHouse exactly once after the next
flush, counted without FINAL (no duplicate rows at all, not only collapsed ones)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from testing.helpers import ROOT, clean_env
from testing.tracking import count, event, event_ids, post
from tracking.flusher import Flusher

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# The crash is injected in a child process at an exact point of `Flusher.run_once()`; the
# child then dies with os._exit, as a SIGKILL or power cut would stop it: no cleanup runs.
CRASHING_FLUSHER = """
import os, sys, django
django.setup()
from django.conf import settings
settings.OPENTRACE_TRACKING_REDIS_KEY_PREFIX = os.environ["TEST_TRACKING_KEY_PREFIX"]
from tracking import store
from tracking.buffer import get_buffer
from tracking.flusher import Flusher
from tracking.hold import Hold

where = sys.argv[1]
buffer = get_buffer()
real_insert = store.insert
if where == "after-insert":
    buffer.commit = lambda batch: os._exit(3)
else:
    def half_then_die(ch, rows):
        real_insert(ch, rows[: len(rows) // 2])
        os._exit(3)
    store.insert = half_then_die
# The hold reads the update runs; this child has no database of its own to ask.
Flusher(buffer, hold=lambda: Hold(False, "", (0, ""))).run_once()
sys.exit(0)
"""


def crash_a_flusher(where: str, settings) -> None:
    env = clean_env(
        DJANGO_SETTINGS_MODULE="opentrace.settings",
        OPENTRACE_DATA_DIR=str(settings.OPENTRACE_TRACKING_DIR.parent),
        CLICKHOUSE_URL=settings.CLICKHOUSE.dsn,
        OPENTRACE_TRACKING_BUFFER=settings.OPENTRACE_TRACKING_BUFFER,
        # This worker's keys in a Redis db other test workers share (tests/bootstrap.py).
        TEST_TRACKING_KEY_PREFIX=settings.OPENTRACE_TRACKING_REDIS_KEY_PREFIX,
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_FLUSHER, where],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr[-3000:]


@pytest.mark.parametrize("where", ["after-insert", "mid-insert"])
def test_every_event_is_stored_exactly_once_after_a_crash(client, project, engine, buffer, settings, where):
    sent = [str(uuid.uuid4()) for _ in range(300)]
    for start in range(0, 300, 100):
        body = {"events": [event(n, event_id=sent[n]) for n in range(start, start + 100)]}
        assert post(client, body, project.write_key).status_code == 200
    crash_a_flusher(where, settings)
    assert 0 < count(final=False) <= 300  # the dead flusher wrote some or all of them

    post(client, {"events": [event(999)]}, project.write_key)  # and life goes on
    outcome = Flusher(buffer).run_once()
    assert outcome.state == "flushed"
    assert count(final=False) == 301
    assert set(sent) <= set(event_ids())
    assert Flusher(buffer).run_once().state == "idle"


def test_a_crash_between_two_flushes_of_one_backlog_never_rewrites_the_first(
    client, project, engine, buffer, settings
):
    for start in range(0, 400, 100):
        post(client, {"events": [event(n) for n in range(start, start + 100)]}, project.write_key)
    assert Flusher(buffer, max_events=200).run_once().events == 200
    crash_a_flusher("after-insert", settings)  # writes the next 200, dies before the commit
    while Flusher(buffer, max_events=50).run_once().state == "flushed":
        pass  # a smaller batch size than the crashed one: the suspect span must still be honoured
    assert count(final=False) == 400
