"""The ClickHouse client boundary against the real embedded engine (chdb)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.test import override_settings

from opentrace.clickhouse import client as clickhouse
from opentrace.config import ClickHouseTarget
from testing.helpers import closed_port


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "ch"
    target = ClickHouseTarget(dsn=f"chdb://{path}", database="opentrace", embedded=True, path=path)
    with override_settings(CLICKHOUSE=target):
        yield path


HOLD = """
import sys, time, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
client.command("SELECT 1")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
client.close()
print("released", flush=True)
time.sleep(30)
"""


def hold_engine(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, f"chdb://{path}", str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_it_stores_and_reads_rows_in_the_embedded_engine(engine):
    with clickhouse.connect() as ch:
        ch.command(f"CREATE DATABASE IF NOT EXISTS {clickhouse.database()}")
        ch.command(
            "CREATE TABLE IF NOT EXISTS opentrace.probe (k String, v UInt32) ENGINE = MergeTree ORDER BY k"
        )
        ch.insert("opentrace.probe", [["a", 1], ["it's", 2]], column_names=["k", "v"])
    # A new client (a new use) sees what the previous one wrote: the data lives on disk.
    with clickhouse.connect() as ch:
        rows = ch.query("SELECT k, v FROM opentrace.probe WHERE k = {k:String}", parameters={"k": "it's"})
        assert rows.result_rows == [("it's", 2)]


def test_closing_releases_the_path_for_another_process(engine):
    with clickhouse.connect() as ch:
        ch.command("SELECT 1")
    # Another process can now open it (it would fail while we held it).
    proc = hold_engine(engine, 0)
    try:
        assert proc.stdout.readline().strip() == "released"
    finally:
        proc.kill()
        proc.wait()


def test_it_waits_while_another_process_holds_the_engine_then_proceeds(engine):
    proc = hold_engine(engine, 1.5)
    try:
        started = time.monotonic()
        with clickhouse.connect(busy_timeout=10) as ch:
            assert ch.command("SELECT 42") == 42
        waited = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert 0.5 < waited < 10


def test_an_engine_held_past_the_limit_is_a_clear_busy_error(engine):
    proc = hold_engine(engine, 60)
    try:
        with pytest.raises(clickhouse.ClickHouseBusy, match="held by another process"):
            clickhouse.open_client(busy_timeout=0.5)
    finally:
        proc.kill()
        proc.wait()


def test_threads_of_one_process_share_the_engine(engine):
    errors: list[BaseException] = []

    def use() -> None:
        try:
            for _ in range(3):
                with clickhouse.connect() as ch:
                    assert ch.command("SELECT 1") == 1
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_an_unreachable_server_is_unavailable_not_a_crash():
    target = ClickHouseTarget(
        dsn=f"http://u:pw-123@127.0.0.1:{closed_port()}", database="opentrace", embedded=False
    )
    with override_settings(CLICKHOUSE=target), pytest.raises(clickhouse.ClickHouseUnavailable) as info:
        clickhouse.ping()
    assert "pw-123" not in str(info.value)


def test_the_database_name_comes_from_the_url():
    target = ClickHouseTarget(dsn="http://h:8123", database="analytics", embedded=False)
    with override_settings(CLICKHOUSE=target):
        assert clickhouse.database() == "analytics"
        assert clickhouse.is_embedded() is False
