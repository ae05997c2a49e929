"""`make run` (scripts/run_local.py) serves `POST /api/track` and runs the flusher: an event
sent to a freshly started local install reaches ClickHouse without anyone flushing by hand,
and SIGHUP (what the agent's `local` preset sends at `deploy`) restarts the flusher too."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from testing.helpers import ROOT, manage, start_local_runner, wait_for_health
from testing.tracking import event

pytestmark = pytest.mark.slow

COUNT = """
import django; django.setup()
from opentrace.clickhouse import client
with client.connect(busy_timeout=30) as ch:
    sql = "SELECT count() FROM opentrace.events WHERE event_id = {id:UUID}"
    print(ch.command(sql, parameters={"id": "%s"}))
"""


def flusher_status(data_dir) -> dict:
    try:
        return json.loads((data_dir / "tracking" / "flusher.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_the_local_runner_flushes_tracked_events_into_clickhouse(tmp_path):
    runner = start_local_runner(tmp_path)
    proc, base, env = runner.proc, runner.url, runner.env
    try:
        wait_for_health(base, proc)
        made = manage(
            "shell",
            "-c",
            "from tracking.models import Project; print(Project.objects.create(name='S').write_key)",
            env=env,
        )
        key = made.stdout.strip().splitlines()[-1]
        first_pid = flusher_status(tmp_path).get("pid")
        proc.send_signal(signal.SIGHUP)  # as at deploy: web, worker and flusher restart
        deadline = time.monotonic() + 90
        while flusher_status(tmp_path).get("pid") in (None, first_pid):
            assert time.monotonic() < deadline, "the flusher was not restarted"
            time.sleep(0.3)
        wait_for_health(base, proc)

        given = str(uuid.uuid4())
        request = urllib.request.Request(
            f"{base}/api/track",
            data=json.dumps({"events": [event(1, event_id=given)]}).encode(),
            headers={"X-OpenTrace-Key": key},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response) == {"accepted": 1}
        # The runner's flusher is the writer: `--once` waits until it has emptied the buffer.
        waited = manage("flush_events", "--once", "--timeout", "60", env=env)
        assert "the running flusher has emptied the buffer" in waited.stdout, waited.stderr[-2000:]
        counted = subprocess.run(
            [sys.executable, "-c", COUNT % given],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "opentrace.settings"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert counted.stdout.strip().splitlines()[-1] == "1", counted.stderr[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
