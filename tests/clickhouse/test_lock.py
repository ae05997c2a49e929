"""The migration lock across real processes: one run at a time, released by a killed holder.

These tests use whichever lock the configured database selects: the PostgreSQL advisory
lock with DATABASE_URL=postgres://..., the file lock in the data dir on SQLite. The tests
marked `postgres` check what only the advisory lock does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from opentrace.clickhouse.errors import LockLost, LockUnavailable
from opentrace.clickhouse.lock import ADVISORY_KEY, FileLock, PostgresAdvisoryLock, migration_lock
from testing.clickhouse import cli, ledger_rows, query
from testing.helpers import ROOT, clean_env, closed_port

pytestmark = pytest.mark.django_db

SETUP = """
import os, sys, time, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")
django.setup()
"""
HOLDER = (
    SETUP
    + """
from opentrace.clickhouse.lock import migration_lock
with migration_lock(float(sys.argv[1])) as lock:
    print("locked", flush=True)
    time.sleep(600)
"""
)
WORKER = (
    SETUP
    + """
from django.conf import settings
from django.core.management import ManagementUtility
settings.CLICKHOUSE_MIGRATIONS_DIR = sys.argv[1]
go = os.environ.get("GO_FILE")
if go:  # start together: wait until the test says go, so the runs really overlap
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
ManagementUtility(["manage.py", *sys.argv[2:]]).execute()
"""
)
# Statement 2 takes ~2 s: long enough for two runs started together to overlap.
SLOW = """
CREATE TABLE IF NOT EXISTS ${db}.slow${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x;
SELECT sleep(2);
CREATE TABLE IF NOT EXISTS ${db}.after${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x;
"""
# Statement 2 takes ~5 s, one row per block: a wide window to kill the run inside it.
VERY_SLOW = """
CREATE TABLE IF NOT EXISTS ${db}.slow${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x;
SELECT sleepEachRow(1) FROM numbers(5) SETTINGS max_block_size = 1;
CREATE TABLE IF NOT EXISTS ${db}.after${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x;
"""


def database_url() -> str:
    conf = connection.settings_dict
    if connection.vendor != "postgresql":
        return f"sqlite:///{Path(settings.DATA_DIR) / 'lock-children.sqlite3'}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf.get("PASSWORD") else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


def child_env(engine: Path) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url(),
        CLICKHOUSE_URL=f"chdb://{engine}",
        OPENTRACE_DATA_DIR=str(settings.DATA_DIR),
        PYTHONUNBUFFERED="1",
    )


def start(code: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def hold_lock(engine: Path) -> subprocess.Popen[str]:
    proc = start(HOLDER, "30", env=child_env(engine))
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "locked", proc.stderr.read() if proc.stderr else ""
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def slow(engine, migrations):
    migrations.write("0001_slow.sql", SLOW)
    return migrations.path


def test_apply_fails_fast_while_another_process_holds_the_lock(engine):
    holder = hold_lock(engine)
    try:
        began = time.monotonic()
        result = cli("clickhouse_migrate", "apply", "--lock-timeout", "0")
        assert time.monotonic() - began < 5
    finally:
        kill(holder)
    assert result.code == 1
    assert "another migration run holds the migration lock" in result.err
    assert f"pid {holder.pid}" in result.err or "backend pid" in result.err
    assert "pass a longer --lock-timeout" in result.err
    assert query("SELECT count() FROM system.databases WHERE name = 'opentrace'") == [(0,)]


def test_status_says_when_a_run_is_in_progress(engine):
    assert "in progress" not in cli("clickhouse_migrate", "status").out
    holder = hold_lock(engine)
    try:
        result = cli("clickhouse_migrate", "status")
        data = json.loads(cli("clickhouse_migrate", "status", "--json").out)
    finally:
        kill(holder)
    assert result.code == 0
    assert "A migration run is in progress" in result.out
    assert data["in_progress"]


def test_apply_waits_for_the_lock_and_a_sigkilled_holder_releases_it(engine):
    holder = hold_lock(engine)
    timer = threading.Timer(1.0, lambda: os.kill(holder.pid, signal.SIGKILL))
    timer.start()
    try:
        began = time.monotonic()
        result = cli("clickhouse_migrate", "apply", "--lock-timeout", "30")
        waited = time.monotonic() - began
    finally:
        timer.cancel()
        kill(holder)
    assert result.code == 0, result.text
    assert waited >= 0.9
    assert "applied 2 migration(s)" in result.out


def test_migrate_all_waits_on_the_same_lock(engine):
    holder = hold_lock(engine)
    try:
        result = cli("migrate_all", "--lock-timeout", "0.5")
    finally:
        kill(holder)
    assert result.code == 1
    assert "another migration run holds the migration lock" in result.err
    assert "waited 0.5 s" in result.err


@pytest.mark.parametrize("timeout", ["0", "30"])
def test_two_concurrent_applies_never_both_apply(engine, slow, timeout, tmp_path):
    go = tmp_path / "go"
    env = {**child_env(engine), "GO_FILE": str(go)}
    args = ("clickhouse_migrate", "apply", "--lock-timeout", timeout)
    runs = [start(WORKER, str(slow), *args, env=env) for _ in range(2)]
    for run in runs:
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [run.communicate(timeout=120) for run in runs]
    codes = sorted(run.returncode for run in runs)
    everything = "".join(out + err for out, err in outputs)
    if timeout == "0":
        assert codes == [0, 1], everything
        assert "another migration run holds the migration lock" in everything
    else:
        assert codes == [0, 0], everything
        assert "already up to date" in everything
    assert everything.count("Applying 0001_slow") == 1
    # One `running` row at statement 0: the migration was started exactly once.
    assert [row[:2] for row in ledger_rows("0001_slow")].count(("running", 0)) == 1
    assert ledger_rows("0001_slow")[-1][:2] == ("applied", 3)


def test_a_run_killed_mid_migration_leaves_it_dirty_and_the_lock_free(engine, migrations):
    migrations.write("0001_slow.sql", VERY_SLOW)
    run = start(WORKER, str(migrations.path), "clickhouse_migrate", "apply", env=child_env(engine))
    assert run.stdout is not None
    line = run.stdout.readline()
    assert "Applying 0001_slow" in line, line + (run.stderr.read() if run.stderr else "")
    time.sleep(2.5)  # inside statement 2 of 3, the 5-second one
    kill(run)

    result = cli("clickhouse_migrate", "apply", "--lock-timeout", "0")
    assert result.code == 1
    assert "0001_slow is running after 1 of 3 statements (its run was interrupted)" in result.err
    assert "Next statement 2 (line 2): SELECT sleepEachRow(1)" in result.err
    resumed = cli("clickhouse_migrate", "resume", "0001_slow", "--lock-timeout", "0")
    assert resumed.code == 0, resumed.text
    assert cli("clickhouse_migrate", "status", "--check").code == 0


def test_a_file_lock_excludes_a_second_holder_until_released(tmp_path):
    first, second = FileLock(tmp_path / "m.lock"), FileLock(tmp_path / "m.lock")
    first.acquire(0)
    with pytest.raises(LockUnavailable, match=f"held by pid {os.getpid()}"):
        second.acquire(0.3)
    first.ensure_held()
    first.release()
    second.acquire(0)
    second.release()


def test_a_file_lock_whose_file_was_removed_is_lost(tmp_path):
    lock = FileLock(tmp_path / "m.lock")
    lock.acquire(0)
    (tmp_path / "m.lock").unlink()
    with pytest.raises(LockLost, match="was removed"):
        lock.ensure_held()
    lock.release()


def test_a_file_lock_refuses_a_symlink(tmp_path):
    (tmp_path / "target").write_text("")
    (tmp_path / "m.lock").symlink_to(tmp_path / "target")
    with pytest.raises(LockUnavailable, match="cannot open the file lock"):
        FileLock(tmp_path / "m.lock").acquire(0)


@pytest.mark.postgres
def test_on_postgresql_the_lock_is_an_advisory_lock_on_its_own_session(engine):
    with migration_lock(0) as lock:
        assert isinstance(lock, PostgresAdvisoryLock)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT a.application_name, a.pid <> pg_backend_pid() FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.granted "
                # Advisory locks are per database; other test databases hold theirs too.
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                ADVISORY_KEY,
            )
            assert cursor.fetchall() == [("opentrace-migrations-lock", True)]


@pytest.mark.postgres
def test_on_postgresql_a_second_session_cannot_take_the_lock(engine):
    with migration_lock(0):
        began = time.monotonic()
        with pytest.raises(LockUnavailable, match="held by backend pid"), migration_lock(0.5):
            pass
        assert time.monotonic() - began >= 0.5


@pytest.mark.postgres
def test_on_postgresql_a_lost_session_is_noticed_before_the_next_statement(engine):
    with migration_lock(0) as lock:
        assert isinstance(lock, PostgresAdvisoryLock)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [lock.conn.info.backend_pid])
        with pytest.raises(LockLost, match="was lost"):
            lock.ensure_held()


@pytest.mark.postgres
def test_on_postgresql_a_sigkilled_holder_releases_the_lock_at_once(engine):
    holder = hold_lock(engine)
    with pytest.raises(LockUnavailable), migration_lock(0):
        pass
    kill(holder)
    deadline = time.monotonic() + 5
    with migration_lock(5):
        assert time.monotonic() < deadline


@pytest.mark.postgres
def test_on_postgresql_an_unreachable_server_is_a_clear_lock_error():
    lock = PostgresAdvisoryLock()
    lock.settings_dict = {
        **lock.settings_dict,
        "HOST": "127.0.0.1",
        "PORT": closed_port(),
        "PASSWORD": "s3cret",
    }
    with pytest.raises(
        LockUnavailable, match="cannot open a PostgreSQL connection for the migration lock"
    ) as info:
        lock.acquire(0)
    assert "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)
