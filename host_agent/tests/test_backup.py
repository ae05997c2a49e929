"""Backup sets and `restore_all.py`: round trips, damage detected before anything is restored."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from host_agent.backup import (
    BackupError,
    BackupTools,
    apply_retention,
    backup_sets,
    create_backup,
    restore_all,
    restore_database,
)
from host_agent.backup_report import verify_set
from host_agent.clock import UTC
from testing.agent import AGENT_ROOT, restore, run_agent


@pytest.fixture
def backed_up(project, backend):
    (project.data_dir / "uploads").mkdir()
    (project.data_dir / "uploads" / "logo.png").write_bytes(b"\x89PNG original")
    done = run_agent(project, backend, "backup")
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def test_a_backup_set_has_a_manifest_with_a_checksum_for_every_file(project, backed_up):
    manifest = json.loads((backed_up / "manifest.json").read_text())

    assert backed_up.parent == project.data_dir / "backups"
    assert backed_up.name.endswith("-1.1.5")
    assert manifest["from_version"] == "1.1.5"
    assert manifest["commit"] == project.commits["1.1.5"]
    assert set(manifest["files"]) == {"database.sqlite3", "data.tar.gz"}
    assert all(len(meta["sha256"]) == 64 and meta["size"] > 0 for meta in manifest["files"].values())


def test_restore_brings_back_the_database_and_the_data_dir(project, backed_up):
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("UPDATE notes SET text = 'changed after the backup'")
        db.execute("INSERT INTO notes VALUES (2, 'added after the backup')")
    (project.data_dir / "uploads" / "logo.png").write_bytes(b"overwritten")

    done = restore(project, backed_up)

    assert done.returncode == 0, done.stderr
    assert project.db_rows() == [(1, "written before the update")]
    assert (project.data_dir / "uploads" / "logo.png").read_bytes() == b"\x89PNG original"


def test_a_corrupted_file_is_detected_before_anything_is_restored(project, backed_up):
    archive = backed_up / "data.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("UPDATE notes SET text = 'changed after the backup'")

    done = restore(project, backed_up)

    assert done.returncode == 1
    assert "data.tar.gz: checksum mismatch" in done.stderr
    assert "nothing restored" in done.stderr
    assert project.db_rows() == [(1, "changed after the backup")]


def test_a_missing_file_or_manifest_is_detected(project, backed_up):
    (backed_up / "database.sqlite3").unlink()
    assert "database.sqlite3: missing" in restore(project, backed_up).stderr
    (backed_up / "manifest.json").write_text("{not json")
    assert "not valid JSON" in restore(project, backed_up).stderr


def test_a_dry_run_verifies_and_restores_nothing(project, backed_up):
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("UPDATE notes SET text = 'changed after the backup'")

    done = restore(project, backed_up, "--dry-run")

    assert done.returncode == 0
    assert "dry run" in done.stdout
    assert project.db_rows() == [(1, "changed after the backup")]


def test_retention_keeps_the_newest_sets(project):
    tools = BackupTools(
        data_dir=project.data_dir, project_dir=project.checkout, env={}, python_cmd=[], clickhouse=False
    )
    start = datetime(2026, 11, 1, tzinfo=UTC)
    made = [
        create_backup(tools, from_version="1.1.5", commit="c", now=start + timedelta(days=i))
        for i in range(7)
    ]
    (project.data_dir / "backups" / "20261130T000000Z-1.1.5.partial").mkdir()  # a crashed backup

    apply_retention(project.data_dir / "backups", keep=5)

    assert backup_sets(project.data_dir / "backups") == made[2:]
    assert not list((project.data_dir / "backups").glob("*.partial"))


def test_the_data_archive_leaves_out_backups_broker_and_agent_state(project, backed_up):
    import tarfile

    with tarfile.open(backed_up / "data.tar.gz") as archive:
        names = archive.getnames()
    assert "uploads/logo.png" in names
    assert not [n for n in names if n.split("/")[0] in {"backups", "broker", "updates", "opentrace.sqlite3"}]


def _pg_available() -> bool:
    try:
        return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _pg_available(), reason="needs PostgreSQL on 127.0.0.1:5432 and pg_dump/pg_restore")
def test_a_postgresql_database_round_trips_through_pg_dump_and_pg_restore(project):
    name = f"ot_agent_{uuid.uuid4().hex[:8]}"
    admin = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run([*admin, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        sql = [*admin, "-d", name, "-At", "-c"]
        subprocess.run(
            [
                *sql,
                "CREATE TABLE notes (id int primary key, text text); INSERT INTO notes VALUES (1, 'kept')",
            ],
            check=True,
            capture_output=True,
        )
        tools = BackupTools(
            data_dir=project.data_dir,
            project_dir=project.checkout,
            env={**os.environ, "DATABASE_URL": url},
            python_cmd=[],
            clickhouse=False,
        )
        backup = create_backup(tools, from_version="1.1.5", commit="c")
        subprocess.run(
            [*sql, "UPDATE notes SET text = 'changed'; CREATE TABLE added_later (id int)"],
            check=True,
            capture_output=True,
        )

        restore_all(tools, backup, include_data_dir=False)

        rows = subprocess.run(
            [*sql, "SELECT text FROM notes"], check=True, capture_output=True, text=True
        ).stdout
        assert rows.strip() == "kept"
        # What came after the backup is gone too, not only what the dump holds.
        tables = subprocess.run(
            [*sql, "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert tables.strip() == "notes"
        assert not list(backup.parent.glob(".restore-*"))

        # A dump pg_restore cannot read changes nothing (the checksums are bypassed here).
        subprocess.run([*sql, "UPDATE notes SET text = 'after'; CREATE TABLE later2 (id int)"], check=True)
        (backup / "database.pgdump").write_bytes((backup / "database.pgdump").read_bytes()[:200])
        with pytest.raises(BackupError, match="pg_restore failed"):
            restore_database(tools, backup, {"database": "postgres"})
        state = subprocess.run(
            [*sql, "SELECT text, to_regclass('later2') IS NOT NULL FROM notes"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert state.strip() == "after|t"
    finally:
        subprocess.run(
            [*admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False, capture_output=True
        )


CLICKHOUSE_SEED = textwrap.dedent(
    """
    import sys, clickhouse_connect
    client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1], database="default")
    for statement in sys.argv[2:]:
        client.command(statement)
    print(client.query("SELECT n, s FROM opentrace.events ORDER BY n").result_rows,
          client.command("EXISTS TABLE opentrace.newer"))
    client.close()
    """
)


def clickhouse(path: Path, *statements: str) -> str:
    python = AGENT_ROOT / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", CLICKHOUSE_SEED, str(path), *statements],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.slow
def test_clickhouse_tables_round_trip_through_the_engines_own_snapshot(tmp_path):
    python = AGENT_ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.skip("needs the project's .venv (clickhouse-connect and chdb)")
    data_dir = tmp_path / "data"
    store = data_dir / "clickhouse"
    clickhouse(
        store,
        "CREATE DATABASE IF NOT EXISTS opentrace",
        "CREATE TABLE opentrace.events (n UInt32, s String) ENGINE = MergeTree ORDER BY n",
        "INSERT INTO opentrace.events VALUES (1, 'a'), (2, 'b')",
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENTRACE_", "DATABASE_URL", "CLICKHOUSE_"))
    }
    env.update(OPENTRACE_DATA_DIR=str(data_dir), PYTHONPATH=str(AGENT_ROOT))
    tools = BackupTools(data_dir=data_dir, project_dir=AGENT_ROOT, env=env, python_cmd=[str(python)])
    backup = create_backup(tools, from_version="1.1.5", commit="c")
    schema = json.loads((backup / "clickhouse" / "schema.json").read_text())
    (events,) = [t for t in schema["tables"] if t["name"] == "events"]
    assert events["rows"] == 2
    # The engine's own part, hard-linked: the same inode as the live table's (no copy, no rows read).
    (part,) = events["parts"]
    linked = backup / "clickhouse" / "parts" / "events" / part / "checksums.txt"
    assert linked.stat().st_nlink >= 2
    assert not list((store / "shadow").glob("*/*")), "the freeze is removed once the set has its links"
    clickhouse(
        store,
        "INSERT INTO opentrace.events VALUES (3, 'after')",
        "CREATE TABLE opentrace.newer (x UInt8) ENGINE = Log",
    )

    restore_all(tools, backup, include_data_dir=False)

    # The rows are back, and the table created after the backup is gone.
    assert clickhouse(store) == "[(1, 'a'), (2, 'b')] 0"


def test_a_sqlite_restore_keeps_the_updates_own_record_and_rewinds_the_rest(project, backend):
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("CREATE TABLE updates_updaterun (id TEXT PRIMARY KEY, status TEXT)")
        db.execute(
            "CREATE TABLE updates_updateevent (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, seq INT)"
        )
        db.execute("INSERT INTO updates_updaterun VALUES ('r1', 'running')")
        db.execute("INSERT INTO updates_updateevent (run_id, seq) VALUES ('r1', 1)")
    done = run_agent(project, backend, "backup")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("UPDATE updates_updaterun SET status = 'rolled_back'")
        db.execute("INSERT INTO updates_updateevent (run_id, seq) VALUES ('r1', 2), ('r1', 3)")
        db.execute("UPDATE notes SET text = 'changed by the failed release'")

    restored = restore(project, Path(done.stdout.strip()))

    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        assert db.execute("SELECT status FROM updates_updaterun").fetchall() == [("rolled_back",)]
        assert db.execute("SELECT seq FROM updates_updateevent ORDER BY seq").fetchall() == [(1,), (2,), (3,)]
    assert project.db_rows() == [(1, "written before the update")]


def test_a_backup_is_verified_by_a_test_restore_and_a_damaged_one_fails(project, backend, backed_up):
    verification = json.loads((backed_up / "verification.json").read_text())
    assert verification["state"] == "verified"
    assert verification["detail"].endswith("scratch database, tables: 1")

    (backed_up / "database.sqlite3").write_bytes(b"SQLite format 3\x00 but not really")
    done = run_agent(project, backend, "verify", backed_up.name)

    assert done.returncode == 1
    result = json.loads(done.stdout)[backed_up.name]
    assert result["state"] == "failed"
    assert "database.sqlite3" in result["detail"]


@pytest.mark.skipif(not _pg_available(), reason="needs PostgreSQL on 127.0.0.1:5432 and pg_restore")
def test_a_postgresql_set_is_verified_in_a_scratch_database_that_is_dropped_after(project):
    name = f"ot_agent_{uuid.uuid4().hex[:8]}"
    admin = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run([*admin, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        subprocess.run(
            [*admin, "-d", name, "-c", "CREATE TABLE a (id int); CREATE TABLE b (id int)"], check=True
        )
        tools = BackupTools(
            data_dir=project.data_dir,
            project_dir=project.checkout,
            env={**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"},
            python_cmd=[],
            clickhouse=False,
        )
        backup = create_backup(tools, from_version="1.1.5", commit="c")

        assert verify_set(tools, backup)["detail"].endswith("tables: 2")
        scratch = subprocess.run(
            [*admin, "-At", "-c", "SELECT count(*) FROM pg_database WHERE datname LIKE 'opentrace_verify_%'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert scratch == "0"
    finally:
        subprocess.run(
            [*admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False, capture_output=True
        )
