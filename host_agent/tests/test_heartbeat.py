"""Heartbeats follow the agent's state: at once when a run starts or ends, and after a database restore.

The regular heartbeat comes every 30 s; without these the backend shows an idle agent as busy,
or (after a restore dropped the heartbeats recorded since the backup) as offline.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

from host_agent.backend import BackendClient
from host_agent.heartbeat import Heartbeat
from testing.agent import RESTART, SECRET, agent_argv, agent_env, run_agent, trigger_fields, write_trigger
from testing.helpers import poll


def at(payload: dict) -> datetime:
    return datetime.fromisoformat(payload["at"])


def test_run_sends_busy_then_idle_heartbeats_as_soon_as_a_run_starts_and_ends(project, backend):
    agent = subprocess.Popen(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend, "run")],
        env=agent_env(),  # the regular heartbeat interval stays 30 s
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert poll(lambda: backend.heartbeats), "no heartbeat right after start"
        run_id = write_trigger(project, trigger_fields("1.2.0"))
        assert poll(lambda: backend.final_state(run_id) == "succeeded", 30)
        # Started idle, busy when the run started, idle again when it ended.
        assert poll(lambda: len(backend.heartbeats) >= 3 and not backend.heartbeats[-1]["busy"], 5), (
            backend.heartbeats
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            raise
    assert code == 0, agent.stderr.read()
    during = [h for h in backend.heartbeats if h["busy"]]
    assert during
    assert all(h["run_id"] == run_id for h in during)
    last = backend.heartbeats[-1]
    assert (last["busy"], last["run_id"]) == (False, None)
    # Sent once the run's final event was written, not 30 s later.
    assert at(last) >= at(backend.run_events(run_id)[-1])


def test_once_tells_the_backend_it_is_idle_before_it_exits(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    last = backend.heartbeats[-1]
    assert (last["busy"], last["run_id"]) == (False, None)
    assert at(last) >= at(backend.run_events(run_id)[-1])


def test_a_heartbeat_follows_the_database_restore_of_a_rollback(project, backend):
    # The previous release takes a second to come back, as a real restart does.
    slow_restart = f'{sys.executable} -c "import time; time.sleep(1); {RESTART}"'
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    # Irreversible, so the rollback restores the database instead of reverting the migration.
    done = run_agent(
        project, backend, restart=slow_restart, FAKE_FAIL="migrate:1.2.0", FAKE_IRREVERSIBLE="1.2.0"
    )

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    rollback_started = next(
        at(e)
        for e in backend.run_events(run_id)
        if (e.get("step"), e.get("state")) == ("rollback", "started")
    )
    # What the restored database holds: heartbeats from before the backup, then the ones sent since.
    after_restore = [h for h in backend.stored_heartbeats if at(h) >= rollback_started]
    assert after_restore, f"no heartbeat in the restored database: {backend.stored_heartbeats}"
    assert (after_restore[0]["busy"], after_restore[0]["run_id"]) == (True, run_id)
    assert (after_restore[-1]["busy"], after_restore[-1]["run_id"]) == (False, None)


def test_a_prompted_heartbeat_is_retried_until_the_backend_answers(backend):
    beat = Heartbeat(
        BackendClient(backend.url, SECRET, timeout=1.0),
        lambda: "1.1.5",
        interval=30.0,
        retry_interval=0.05,
        state=lambda: (False, None),
    )
    stop = threading.Event()
    backend.down = True
    thread = threading.Thread(target=beat.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert poll(lambda: backend.refused_while_down >= 1, 5)
        beat.prompt()
        assert poll(lambda: backend.refused_while_down >= 3, 5), "a prompted beat was not retried"
        backend.down = False
        assert poll(lambda: backend.heartbeats, 5)
        delivered = backend.refused_while_down
        # Delivered: back to the regular interval, no more retries.
        assert not poll(lambda: backend.refused_while_down > delivered or len(backend.heartbeats) > 1, 0.5)
    finally:
        stop.set()
        beat.wake()
        thread.join(5)
    assert not thread.is_alive()


def test_a_prompt_just_before_stopping_is_sent_once_and_the_thread_ends_at_once(backend):
    beat = Heartbeat(BackendClient(backend.url, SECRET), lambda: "1.1.5", interval=30.0, retry_interval=2.0)
    stop = threading.Event()
    thread = threading.Thread(target=beat.run, args=(stop,), daemon=True)
    thread.start()
    assert poll(lambda: len(backend.heartbeats) == 1, 5)
    beat.prompt()
    stop.set()
    beat.wake()
    started = time.monotonic()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0  # not the retry or regular interval
    assert poll(lambda: len(backend.heartbeats) == 2, 1)


def test_stopping_without_a_prompt_sends_nothing_more(backend):
    beat = Heartbeat(BackendClient(backend.url, SECRET), lambda: "1.1.5", interval=30.0)
    stop = threading.Event()
    thread = threading.Thread(target=beat.run, args=(stop,), daemon=True)
    thread.start()
    assert poll(lambda: len(backend.heartbeats) == 1, 5)
    stop.set()
    beat.wake()
    thread.join(1.0)
    assert not thread.is_alive()
    assert len(backend.heartbeats) == 1
