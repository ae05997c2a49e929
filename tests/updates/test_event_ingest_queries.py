"""Taking a batch of agent events never reads or rewrites the run's stored registry document.

The document (`UpdateRun.manifest`, up to 256 KiB) is fixed once the run is requested;
bench/ingest.py showed each batch loading it twice and writing it back, which capped how
many log lines per second the agent API could take.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from testing.agent_client import event, post_events
from testing.factories import make_run
from updates.models import EventIn, UpdateRun

pytestmark = pytest.mark.django_db

DOCUMENT = b'{"releases": [{"version": "1.2.0", "notes": "' + b"n" * (200 * 1024) + b'"}]}'
# The column itself, quoted as Django quotes it; `manifest_verified` is another column.
MANIFEST_COLUMN = re.compile(r'"manifest"')


def _manifest_queries(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"][:200] for q in queries if MANIFEST_COLUMN.search(q["sql"])]


@pytest.fixture
def run() -> UpdateRun:
    return make_run(manifest=DOCUMENT)


def test_an_event_batch_through_the_api_neither_reads_nor_writes_the_document(run):
    client = Client(enforce_csrf_checks=True)
    with CaptureQueriesContext(connection) as captured:
        response = post_events(
            client,
            run.pk,
            event(1, "run", state="running"),
            event(2, "step", step="build", state="started"),
            event(3, "log", step="build", lines=["compiling", "done"]),
        )
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0}
    assert any(q["sql"].startswith("UPDATE") for q in captured.captured_queries)
    assert _manifest_queries(captured.captured_queries) == []
    run.refresh_from_db()
    assert run.status == "running"
    assert run.last_event_at is not None
    assert bytes(run.manifest) == DOCUMENT  # kept, byte for byte


def test_record_events_and_every_transition_leave_the_document_alone(run):
    with CaptureQueriesContext(connection) as captured:
        run.record_events([EventIn(seq=1, kind="log", step="build", lines=["a"])])
        run.record_events([EventIn(seq=2, kind="run", state="succeeded", message="")])
    assert _manifest_queries(captured.captured_queries) == []
    assert run.status == "succeeded"  # the caller's instance follows the stored row
    stored = UpdateRun.objects.get(pk=run.pk)
    assert (stored.status, stored.started_at is not None, stored.finished_at is not None) == (
        "succeeded",
        True,
        True,
    )
    assert bytes(stored.manifest) == DOCUMENT


@pytest.mark.parametrize("finish", ["cancel", "expire", "fail"])
def test_the_other_transitions_do_not_rewrite_the_document(run, finish):
    with CaptureQueriesContext(connection) as captured:
        if finish == "cancel":
            run.cancel()
        elif finish == "expire":
            assert run.expire() is True
        else:
            run.mark_running()
            run.mark_finished("failed", error="boom", failed_step="build")
    writes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    assert writes
    assert not [sql for sql in writes if MANIFEST_COLUMN.search(sql)]
    assert bytes(UpdateRun.objects.get(pk=run.pk).manifest) == DOCUMENT
