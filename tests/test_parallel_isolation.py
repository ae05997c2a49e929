"""`make test` runs the suite on pytest-xdist workers: each worker gets its own data dir (so
its own embedded ClickHouse path and SQLite file) and its own Redis key prefix.

Proved on a real parallel run: a probe test file run by `pytest -n 2` with this project's
configuration, each test writing down what its worker was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testing.helpers import ROOT, closed_port

PROBE = """
import json, os
from pathlib import Path

import pytest
from django.conf import settings

from opentrace.celery import app


@pytest.mark.parametrize("n", range(6))
def test_probe(n):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    record = {
        "worker": worker,
        "data_dir": str(settings.DATA_DIR),
        "clickhouse": str(settings.CLICKHOUSE.path),
        "prefix": app.conf.broker_transport_options.get("global_keyprefix"),
    }
    (Path(os.environ["PROBE_OUT"]) / f"{worker}-{n}.json").write_text(json.dumps(record))
"""


def run_probe(tmp_path: Path, **env: str) -> dict[str, dict]:
    probe = tmp_path / "probe" / "test_probe.py"
    probe.parent.mkdir()
    probe.write_text(PROBE)
    out = tmp_path / "out"
    out.mkdir()
    # A fresh session, not a worker of ours: none of this process's own isolation is passed on.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "OPENTRACE_", "DATABASE_URL", "CELERY_", "CLICKHOUSE_"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            "--basetemp",
            str(tmp_path / "basetemp"),
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            "-q",
            str(probe),
        ],
        cwd=ROOT,
        env={
            **inherited,
            "PROBE_OUT": str(out),
            # Nothing is sent to it: the prefix is configured whether or not Redis runs.
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(path.read_text()) for path in out.glob("*.json")]
    assert len(records) == 6
    workers = {record["worker"]: record for record in records}
    assert set(workers) == {"gw0", "gw1"}, records
    # Every test of a worker saw the same folders: one per worker process, not per test.
    for record in records:
        assert record == workers[record["worker"]]
    return workers


@pytest.mark.slow
def test_each_worker_gets_its_own_temporary_data_dir_and_redis_prefix(tmp_path):
    workers = run_probe(tmp_path)

    gw0, gw1 = workers["gw0"], workers["gw1"]
    assert gw0["data_dir"] != gw1["data_dir"]
    for name, record in workers.items():
        data_dir = Path(record["data_dir"])
        assert data_dir.name.startswith(f"opentrace-test-{name}-")
        assert Path(record["clickhouse"]) == data_dir / "clickhouse"
        assert record["prefix"] == f"opentrace-test-{name}:"


@pytest.mark.slow
def test_a_data_dir_the_developer_chose_gets_a_subfolder_per_worker(tmp_path):
    chosen = tmp_path / "data"

    workers = run_probe(tmp_path, OPENTRACE_DATA_DIR=str(chosen))

    for name, record in workers.items():
        assert Path(record["data_dir"]) == chosen / name
        assert Path(record["clickhouse"]) == chosen / name / "clickhouse"
