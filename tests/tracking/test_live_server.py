"""The endpoint and the flusher as separate processes, as they run in production: gunicorn
and `manage.py flush_events` on one data dir (SQLite, the spool, the embedded engine).

- An event acknowledged with a 200 survives the web process being killed (SIGKILL) before
  anything flushed it.
- The flusher backs off — without failing or exiting — while another process holds the
  embedded engine, the endpoint keeps answering 200 meanwhile, and everything is written
  once the engine is free.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import override_settings

from opentrace.clickhouse import client as clickhouse
from opentrace.config import ClickHouseTarget
from testing.helpers import ROOT, clean_env, free_port, wait_for
from testing.tracking import event

pytestmark = pytest.mark.slow


@dataclass
class Site:
    base: Path
    env: dict[str, str]
    key: str

    @property
    def engine(self) -> Path:
        return self.base / "clickhouse"

    @property
    def tracking(self) -> Path:
        return self.base / "data" / "tracking"

    def manage(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stored_ids(self) -> list[str]:
        target = ClickHouseTarget(
            dsn=f"chdb://{self.engine}", database="opentrace", embedded=True, path=self.engine
        )
        with override_settings(CLICKHOUSE=target), clickhouse.connect(busy_timeout=30) as ch:
            return sorted(str(r[0]) for r in ch.query("SELECT event_id FROM opentrace.events").result_rows)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    base = tmp_path_factory.mktemp("tracking-site")
    env = clean_env(
        OPENTRACE_DATA_DIR=str(base / "data"),
        CLICKHOUSE_URL=f"chdb://{base / 'clickhouse'}",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    site = Site(base, env, "")
    result = site.manage("migrate_all")
    assert result.returncode == 0, result.stderr[-3000:]
    made = site.manage(
        "shell",
        "-c",
        "from tracking.models import Project; print(Project.objects.create(name='Shop').write_key)",
    )
    assert made.returncode == 0, made.stderr[-3000:]
    site.key = made.stdout.strip().splitlines()[-1]
    return site


@pytest.fixture
def web(site: Site) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "opentrace.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=site.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/track"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
        except urllib.error.HTTPError as exc:
            if exc.code == 405:
                break
        except OSError:
            pass
        assert proc.poll() is None, "gunicorn exited"
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.2)
    yield url, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def send(url: str, key: str, events: list[dict]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps({"events": events}).encode(), headers={"X-OpenTrace-Key": key}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response) == {"accepted": len(events)}
        return response.status


def test_an_acknowledged_event_survives_the_web_process_being_killed_before_the_flush(site, web):
    url, proc = web
    sent = [str(uuid.uuid4()) for _ in range(50)]
    for start in range(0, 50, 10):
        assert send(url, site.key, [event(n, event_id=sent[n]) for n in range(start, start + 10)]) == 200
    os.killpg(proc.pid, signal.SIGKILL)  # no shutdown, no atexit: only what is on disk counts
    proc.wait()
    assert list(site.tracking.glob("spool/*.open"))  # the dead worker's segment, never sealed

    flushed = site.manage("flush_events", "--once", "--timeout", "60")
    assert flushed.returncode == 0, flushed.stderr[-3000:]
    assert "flushed 50 event(s)" in flushed.stdout
    assert set(sent) <= set(site.stored_ids())
    assert len([i for i in site.stored_ids() if i in set(sent)]) == 50


HOLD = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
client.command("SELECT 1")
print("held", flush=True)
sys.stdin.readline()
client.close()
"""


def status(site: Site) -> dict:
    try:
        return json.loads((site.tracking / "flusher.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_the_flusher_backs_off_while_another_process_holds_the_engine_then_writes(site, web):
    url, _ = web
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, f"chdb://{site.engine}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    flusher = None
    try:
        assert holder.stdout.readline().strip() == "held"
        flusher = subprocess.Popen(
            [sys.executable, "manage.py", "flush_events"],
            cwd=ROOT,
            env=site.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sent = [str(uuid.uuid4()) for _ in range(30)]
        for start in range(0, 30, 10):
            assert send(url, site.key, [event(n, event_id=sent[n]) for n in range(start, start + 10)]) == 200
        wait_for(lambda: status(site).get("state") == "backoff", 60, "the flusher to back off", interval=0.2)
        assert "held by another process" in status(site)["detail"]
        time.sleep(3)
        assert flusher.poll() is None  # backing off, not failing
        holder.stdin.write("release\n")
        holder.stdin.flush()
        holder.wait(30)
        wait_for(
            lambda: status(site).get("state") == "idle" and status(site).get("backlog") == 0,
            60,
            "the flusher to catch up",
            interval=0.2,
        )
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if flusher is not None:
            flusher.send_signal(signal.SIGTERM)
            flusher.wait(30)
    assert flusher.returncode == 0, flusher.stderr.read()[-3000:]
    assert set(sent) <= set(site.stored_ids())
