"""The outbox and reporter: durable, ordered, retried, and signed per SPEC §6."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from host_agent.backend import BackendClient
from host_agent.outbox import Outbox
from host_agent.reporter import Reporter
from testing.agent import SECRET


def reporter_for(backend, state_dir) -> Reporter:
    return Reporter(Outbox(state_dir / "outbox"), BackendClient(backend.url, SECRET, timeout=2))


def test_events_wait_in_the_outbox_while_the_backend_is_down_and_arrive_in_order(backend, tmp_path):
    run_id = str(uuid.uuid4())
    backend.down = True
    reporter = reporter_for(backend, tmp_path)
    reporter.event(run_id, "run", state="running")
    reporter.event(run_id, "step", step="deploy", state="started")
    assert reporter.deliver_once() is False

    backend.down = False
    reporter.event(run_id, "step", step="deploy", state="succeeded")
    assert reporter.deliver_once() is True

    assert backend.seqs(run_id) == [1, 2, 3]
    assert [e.get("state") for e in backend.run_events(run_id)] == ["running", "started", "succeeded"]
    assert backend.rejected_auth == 0


def test_nothing_is_lost_or_renumbered_across_a_restart(backend, tmp_path):
    run_id = str(uuid.uuid4())
    backend.down = True
    first = reporter_for(backend, tmp_path)
    first.event(run_id, "run", state="running")
    first.event(run_id, "log", step="build", lines=["pip: nothing to do"])
    first.deliver_once()

    # A new process: the same outbox on disk continues the run's numbering.
    backend.down = False
    second = reporter_for(backend, tmp_path)
    assert second.event(run_id, "run", state="succeeded") == 3
    assert second.flush(5) is True

    assert backend.seqs(run_id) == [1, 2, 3]
    assert backend.run_events(run_id)[1]["lines"] == ["pip: nothing to do"]
    assert second.outbox.runs() == []  # a delivered, finished run leaves nothing behind


def test_a_torn_last_line_from_a_crash_is_dropped_and_its_seq_reused_safely(backend, tmp_path):
    run_id = str(uuid.uuid4())
    outbox = Outbox(tmp_path / "outbox")
    outbox.append(run_id, {"kind": "run", "state": "running", "at": datetime.now(UTC).isoformat()})
    path = next((tmp_path / "outbox").glob("*.jsonl"))
    with open(path, "ab") as handle:
        handle.write(b'{"kind": "step", "seq": 2, "sta')  # the write a SIGKILL interrupted

    reopened = Outbox(tmp_path / "outbox")
    assert reopened.append(run_id, {"kind": "step", "step": "preflight", "state": "started", "at": "x"}) == 2
    assert [e["seq"] for e in reopened.runs()[0].events] == [1, 2]


def test_a_permanently_refused_event_is_set_aside_and_the_rest_delivered(backend, tmp_path):
    run_id = str(uuid.uuid4())
    backend.refuse_seq = {2}
    reporter = reporter_for(backend, tmp_path)
    for state in ("running", "started", "succeeded"):
        reporter.event(run_id, "step" if state != "running" else "run", step="preflight", state=state)

    assert reporter.deliver_once() is True

    assert backend.seqs(run_id) == [1, 3]
    dead = next((tmp_path / "outbox" / "dead").glob("*.jsonl")).read_text().splitlines()
    assert json.loads(dead[0])["event"]["seq"] == 2
    assert "409" in json.loads(dead[0])["reason"]


def test_runs_are_delivered_in_the_order_they_started(backend, tmp_path):
    older, newer = str(uuid.uuid4()), str(uuid.uuid4())
    backend.down = True
    reporter = reporter_for(backend, tmp_path)
    reporter.event(older, "run", state="running")
    reporter.event(newer, "run", state="running")
    reporter.event(older, "run", state="failed")
    backend.down = False

    assert reporter.flush(5) is True

    assert [(e["run_id"], e["seq"]) for e in backend.events] == [(older, 1), (older, 2), (newer, 1)]


def test_a_wrong_secret_is_refused_by_the_backend_and_kept_for_later(backend, tmp_path):
    run_id = str(uuid.uuid4())
    reporter = Reporter(
        Outbox(tmp_path / "outbox"), BackendClient(backend.url, "not-the-secret" * 3, timeout=2)
    )
    reporter.event(run_id, "run", state="running")

    assert reporter.deliver_once() is False
    assert backend.rejected_auth == 1
    assert backend.events == []
    assert reporter.outbox.pending_count() == 1


def test_the_background_thread_delivers_without_being_asked(backend, tmp_path):
    run_id = str(uuid.uuid4())
    reporter = reporter_for(backend, tmp_path)
    reporter.start()
    try:
        reporter.event(run_id, "run", state="running")
        for _ in range(50):
            if backend.seqs(run_id):
                break
            import time

            time.sleep(0.05)
    finally:
        reporter.stop()
    assert backend.seqs(run_id) == [1]
