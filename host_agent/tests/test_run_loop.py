"""`run`: heartbeats at once, reacts to a trigger within a second, idles cheaply, stops on SIGTERM."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host_agent.watcher import Watcher
from testing.agent import agent_argv, agent_env, trigger_fields, write_trigger
from testing.helpers import poll


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("use_inotify", [True, False])
def test_the_watcher_wakes_within_a_second_of_a_new_trigger(tmp_path, use_inotify):
    watcher = Watcher(tmp_path, use_inotify=use_inotify)
    assert watcher.mode == ("inotify" if use_inotify else "poll")
    threading.Timer(0.2, lambda: (tmp_path / "trigger").write_text("{}")).start()
    started = time.monotonic()
    try:
        while not (tmp_path / "trigger").exists() and time.monotonic() - started < 5:
            watcher.wait(5.0)
    finally:
        watcher.close()
    assert time.monotonic() - started < 1.2


def test_the_watcher_works_with_a_descriptor_above_1024(tmp_path):
    # A long-lived process can hold many descriptors; select() would refuse fd >= 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is too low to reach fd 1024")
    resource.setrlimit(
        resource.RLIMIT_NOFILE,
        (max(soft, 1200) if hard == resource.RLIM_INFINITY else min(max(soft, 1200), hard), hard),
    )
    fillers = []
    try:
        while not fillers or fillers[-1] < 1030:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        watcher = Watcher(tmp_path, use_inotify=True)
        assert watcher.fd is not None
        assert watcher.fd >= 1024
        threading.Timer(0.2, lambda: (tmp_path / "trigger").write_text("{}")).start()
        try:
            assert watcher.wait(5.0) is True
        finally:
            watcher.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_run_heartbeats_processes_a_trigger_and_stops_on_sigterm(project, backend):
    agent = subprocess.Popen(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend, "run")],
        env=agent_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert poll(lambda: backend.heartbeats), "no heartbeat right after start"
        assert backend.heartbeats[0]["deployed_version"] == "1.1.5"
        assert backend.heartbeats[0]["busy"] is False

        # Idle: the agent sleeps in the kernel.
        before = cpu_seconds(agent.pid)
        time.sleep(2.0)
        assert cpu_seconds(agent.pid) - before < 0.2

        written = time.monotonic()
        run_id = write_trigger(project, trigger_fields("1.2.0"))
        assert poll(lambda: backend.seqs(run_id), 5)
        assert time.monotonic() - written < 2.5
        assert poll(lambda: backend.final_state(run_id) == "succeeded", 30)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            raise
    assert code == 0, agent.stderr.read()


def test_a_second_agent_on_the_same_data_dir_refuses_to_start(project, backend):
    first = subprocess.Popen(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend, "run")],
        env=agent_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert poll(lambda: backend.heartbeats)
        second = subprocess.run(
            [sys.executable, "-m", "host_agent", *agent_argv(project, backend, "once")],
            env=agent_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 2
        assert "held by another agent" in second.stderr
    finally:
        first.terminate()
        first.wait(15)


def test_sigterm_lets_the_current_step_finish_then_ends_the_run(project, backend):
    # `deploy` takes a second; SIGTERM arrives in the middle of it.
    slow_restart = (
        f'{sys.executable} -c "import time, shutil, os; time.sleep(1.5); '
        "shutil.copy('VERSION', os.path.join(os.environ['OPENTRACE_DATA_DIR'], 'served'))\""
    )
    run_id = write_trigger(project, trigger_fields("1.2.0"))
    agent = subprocess.Popen(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend, "once", slow_restart)],
        env=agent_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert poll(
        lambda: (
            ("deploy", "started") in [(e.get("step"), e.get("state")) for e in backend.run_events(run_id)]
        ),
        20,
    )
    agent.send_signal(signal.SIGTERM)
    code = agent.wait(60)

    steps = [(e.get("step"), e.get("state")) for e in backend.run_events(run_id) if e["kind"] == "step"]
    assert ("deploy", "succeeded") in steps  # the step in progress completed
    assert ("healthcheck", "started") not in steps  # and no further step began
    assert backend.final_state(run_id) == "rolled_back"
    assert code == 1
    assert project.served() == "1.1.5"
