"""Verifying backup sets, and telling the backend which sets there are (the admin's Backups page).

`verify_set()` proves a set restorable without touching the live data: every checksum, then
a test restore of the database dump into a scratch database (PostgreSQL: a database created
for it and dropped after, `pg_restore --exit-on-error`; SQLite: a copy opened and checked
with `PRAGMA integrity_check`), counting its tables. The result is `verification.json` in
the set. `report_sets()` posts every set's summary to `POST /api/updates/agent/backups`;
the backups dir is the agent's alone, so this is how the web app learns about them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from host_agent import safefs
from host_agent.backend import BackendClient
from host_agent.backup import BackupError, BackupTools, _run, backup_sets, read_manifest, verify_backup
from host_agent.clock import UTC
from host_agent.errors import DeliveryError

logger = logging.getLogger("host_agent.backups")
BACKUPS_PATH = "/api/updates/agent/backups"
VERIFICATION = "verification.json"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _scratch_url(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _test_restore_postgres(tools: BackupTools, dump: Path) -> str:
    scratch = f"opentrace_verify_{secrets.token_hex(4)}"
    count = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    if tools.pg_dump_cmd is not None:
        # compose: inside the database container, as the user the image was started with.
        shell = tools.pg_dump_cmd[:-1]
        script = (
            f'set -e; createdb -U "$POSTGRES_USER" {scratch}; '
            f"trap 'dropdb -U \"$POSTGRES_USER\" --force {scratch}' EXIT; "
            f'pg_restore --no-owner --exit-on-error -U "$POSTGRES_USER" -d {scratch}; '
            f'psql -X -At -U "$POSTGRES_USER" -d {scratch} -c "{count}"'
        )
        with open(dump, "rb") as stdin:
            out = _run(
                [*shell, script], cwd=tools.project_dir, env=tools.env, stdin=stdin, what="test restore"
            )
        return out.strip().splitlines()[-1]
    url = tools.database_url
    admin = [tools.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]
    _run([*admin, "-c", f"CREATE DATABASE {scratch}"], cwd=tools.project_dir, env=tools.env, what="createdb")
    try:
        with open(dump, "rb") as stdin:
            _run(
                [tools.pg_restore, "--no-owner", "--exit-on-error", "-d", _scratch_url(url, scratch)],
                cwd=tools.project_dir,
                env=tools.env,
                stdin=stdin,
                what="test restore (pg_restore)",
            )
        out = _run(
            [tools.psql, "-X", "-At", "-d", _scratch_url(url, scratch), "-c", count],
            cwd=tools.project_dir,
            env=tools.env,
            what="test restore (count)",
        )
    finally:
        with contextlib.suppress(BackupError):
            _run(
                [*admin, "-c", f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"],
                cwd=tools.project_dir,
                env=tools.env,
                what="dropdb",
            )
    return out.strip()


def _test_restore_sqlite(copy: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="opentrace-verify-") as scratch:
        target = Path(scratch) / "db.sqlite3"
        src = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            (check,) = dst.execute("PRAGMA integrity_check").fetchone()
            if check != "ok":
                raise BackupError(f"SQLite integrity check: {check}")
            (tables,) = dst.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        except sqlite3.Error as exc:
            raise BackupError(f"SQLite test restore: {exc}") from None
        finally:
            src.close()
            dst.close()
    return str(tables)


def verify_set(tools: BackupTools, directory: Path) -> dict[str, Any]:
    """Check a set and test-restore its database; the result is also kept in the set."""
    try:
        manifest = verify_backup(directory)
        if manifest["database"] == "postgres":
            tables = _test_restore_postgres(tools, directory / "database.pgdump")
        elif (directory / "database.sqlite3").exists():
            tables = _test_restore_sqlite(directory / "database.sqlite3")
        else:
            tables = "0"
        tables = tables[:40]
        result = {
            "state": "verified",
            "at": _now(),
            "detail": f"checksums match; the dump test-restored into a scratch database, tables: {tables}",
        }
    except BackupError as exc:
        result = {"state": "failed", "at": _now(), "detail": str(exc)[:4000]}
    set_fd = safefs.open_dir(directory)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(VERIFICATION, dir_fd=set_fd)
        with os.fdopen(safefs.create_private(set_fd, VERIFICATION), "w", encoding="utf-8") as out:
            json.dump(result, out)
    finally:
        os.close(set_fd)
    return result


def summary(directory: Path) -> dict[str, Any] | None:
    try:
        manifest = read_manifest(directory)
    except BackupError:
        return None
    try:
        verification = json.loads((directory / VERIFICATION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        verification = {"state": "unverified"}
    files = manifest["files"]
    return {
        "name": directory.name,
        "created_at": manifest.get("created_at"),
        "from_version": str(manifest.get("from_version") or ""),
        "commit": str(manifest.get("commit") or ""),
        "size_bytes": sum(int(meta.get("size", 0)) for meta in files.values()),
        "database": str(manifest.get("database") or ""),
        "clickhouse_rows": manifest.get("clickhouse_rows") or {},
        "verification": verification,
    }


def report_sets(client: BackendClient, backups_dir: Path) -> bool:
    """Best effort: the page is refreshed on the next report when the backend is away."""
    sets = [s for s in (summary(p) for p in backup_sets(backups_dir)) if s is not None]
    try:
        client.post(BACKUPS_PATH, {"agent_id": os.uname().nodename, "sets": sets[-100:]})
    except DeliveryError as exc:
        logger.info("backup sets not reported: %s", exc)
        return False
    return True
