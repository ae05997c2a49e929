"""Backup sets and their restore (SPEC §8): `<DATA_DIR>/backups/<UTC timestamp>-<from version>/`.

A set holds the database (`database.sqlite3` through SQLite's backup API, or `database.pgdump`
from `pg_dump -Fc`), the ClickHouse tables (`clickhouse/`, exported by `host_agent.chdump`
with the project's Python), the rest of the data dir (`data.tar.gz`, without backups, the
broker queue, the embedded ClickHouse store, the agent's own state and the database file),
and `manifest.json` with versions, commit, and the size and SHA-256 of every file. A set is
written under a `.partial` name and renamed when complete, so a crash never leaves a
half-written set that looks whole. Restoring verifies every checksum before touching anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urlsplit

from contract.files import fsync_dir
from host_agent.clock import UTC
from host_agent.errors import AgentError
from host_agent.fsutil import write_json

FORMAT = 1
MARGIN_BYTES = 128 * 1024 * 1024
# Relative to the data dir; each is either backed up separately or must not be restored.
# `tracking` is the tracking endpoint's spool: a restore must never rewind it to older
# contents, or events acknowledged since the backup would be lost (docs/tracking.md).
# "agent": the agent's state dir when it runs as the data dir's owner (SPEC §5); a restore
# must never rewind its journal, outbox or claims.
EXCLUDED = ("backups", "broker", "updates", "agent", "run", "celerybeat-schedule", "tracking")
EMPTY_PUBLIC_SCHEMA = (
    b"DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\nGRANT USAGE ON SCHEMA public TO PUBLIC;\n"
)


class BackupError(AgentError):
    pass


@dataclass(frozen=True)
class BackupTools:
    """How to reach the project's database and ClickHouse from this host."""

    data_dir: Path
    project_dir: Path
    env: dict[str, str]
    # Runs the project's Python (`[python]`, or `docker compose exec -T web python` in compose).
    python_cmd: list[str]
    # When set, the database is PostgreSQL reached by these commands (in compose: pg_dump and
    # pg_restore and psql run inside the database container); otherwise DATABASE_URL decides.
    pg_dump_cmd: list[str] | None = None
    # `pg_restore` turning the dump on stdin into SQL on stdout, and `psql` applying SQL from
    # stdin in one transaction.
    pg_restore_cmd: list[str] | None = None
    psql_cmd: list[str] | None = None
    # Owner (uid, gid) for folders the project's Python writes into (a container's user).
    writer: tuple[int, int] | None = None
    # Maps a host path inside the data dir to the path `python_cmd` sees.
    runtime_path: Callable[[Path], str] = str
    clickhouse: bool = True
    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"
    psql: str = "psql"

    @property
    def database_url(self) -> str:
        return self.env.get("DATABASE_URL") or f"sqlite:///{self.data_dir / 'opentrace.sqlite3'}"

    def database_kind(self) -> str:
        if self.pg_dump_cmd is not None:
            return "postgres"
        scheme = urlsplit(self.database_url).scheme
        if scheme in {"postgres", "postgresql", "pgsql"}:
            return "postgres"
        if scheme == "sqlite":
            return "sqlite"
        raise BackupError(f"DATABASE_URL: cannot back up a {scheme!r} database")

    def dump_command(self) -> list[str]:
        if self.pg_dump_cmd is not None:
            return self.pg_dump_cmd
        return [self.pg_dump, "-Fc", "--no-owner", "-d", self.database_url]

    def restore_script_command(self) -> list[str]:
        if self.pg_restore_cmd is not None:
            return self.pg_restore_cmd
        return [self.pg_restore, "--no-owner", "--file=-"]

    def apply_script_command(self) -> list[str]:
        if self.psql_cmd is not None:
            return self.psql_cmd
        return [
            self.psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
            self.database_url,
        ]

    def sqlite_path(self) -> Path:
        path = unquote(urlsplit(self.database_url).path)
        # sqlite:////abs/path → "//abs/path"; sqlite:///rel → "/rel"
        return Path(path[1:]) if path.startswith("//") else Path(path.lstrip("/"))

    def chdb_path(self) -> Path | None:
        url = self.env.get("CLICKHOUSE_URL") or f"chdb://{self.data_dir / 'clickhouse'}"
        parts = urlsplit(url)
        return Path(parts.path) if parts.scheme == "chdb" else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dir_size(path: Path, skip: set[Path]) -> int:
    total = 0
    if not path.exists():
        return 0
    for item in path.rglob("*"):
        if any(item == s or s in item.parents for s in skip):
            continue
        try:
            info = item.lstat()
        except FileNotFoundError:
            continue  # a lock or journal file removed while we walked, as in _archive_data_dir
        if stat.S_ISREG(info.st_mode):
            total += info.st_size
    return total


def _run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    what: str,
) -> str:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=3600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise BackupError(
            f"{what} failed ({done.returncode}): {done.stderr.decode('utf-8', 'replace')[-800:]}"
        )
    return done.stdout.decode("utf-8", "replace") if done.stdout else ""


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy even while the app writes (it waits for locks)."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
        try:
            dst = sqlite3.connect(target, timeout=60)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"copying SQLite {source} → {target} failed: {exc}") from None


def _excluded(tools: BackupTools) -> set[Path]:
    skip = {tools.data_dir / name for name in EXCLUDED}
    chdb = tools.chdb_path()
    if chdb is not None:
        skip.add(chdb)
    if tools.database_kind() == "sqlite":
        db = tools.sqlite_path()
        skip.update({db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")})
    return skip


def check_free_space(tools: BackupTools, target: Path) -> None:
    """A set is at most about the size of the data dir (the database and ClickHouse included)."""
    need = _dir_size(tools.data_dir, {tools.data_dir / "backups"}) + MARGIN_BYTES
    target.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target).free
    if free < need:
        raise BackupError(
            f"not enough free space in {target}: {free // 2**20} MiB free, {need // 2**20} MiB needed"
        )


def create_backup(
    tools: BackupTools,
    *,
    from_version: str,
    commit: str,
    now: datetime | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Path:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    backups = tools.data_dir / "backups"
    name = f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{from_version}"
    final = backups / name
    suffix = 1
    while final.exists():
        suffix += 1
        final = backups / f"{name}.{suffix}"
    partial = final.with_name(final.name + ".partial")
    check_free_space(tools, backups)
    partial.mkdir(parents=True)
    exporter = tools.writer if tools.clickhouse and os.geteuid() == 0 else None
    if exporter is not None:
        # The web container (the data dir's owner) writes the ClickHouse export into the set;
        # under the unit's UMask=0027 root's folders would shut it out (0750 root:root). It may
        # pass through backups/ and the partial set (0711: no listing, no reading), and owns
        # only clickhouse/. The set is closed to 0700 once the export is in.
        for folder in (backups, partial):
            if folder.stat().st_uid == os.geteuid():
                os.chmod(folder, 0o711)  # noqa: S103 - search only: no listing, no reading
    manifest: dict[str, object] = {
        "format": FORMAT,
        "created_at": moment.isoformat().replace("+00:00", "Z"),
        "from_version": from_version,
        "commit": commit,
        "database": tools.database_kind(),
        "clickhouse": tools.clickhouse,
    }

    if tools.database_kind() == "sqlite":
        source = tools.sqlite_path()
        target = partial / "database.sqlite3"
        if source.exists():
            # The backup API copies a consistent snapshot even while the app writes.
            _sqlite_copy(source, target)
        log(f"database: SQLite {source} copied")
    else:
        with open(partial / "database.pgdump", "wb") as out:
            _run(
                tools.dump_command(),
                cwd=tools.project_dir,
                env=tools.env,
                stdout=out,
                what="pg_dump",
            )
        log("database: PostgreSQL dumped with pg_dump -Fc")

    if tools.clickhouse:
        export_dir = partial / "clickhouse"
        export_dir.mkdir()
        if tools.writer is not None and os.geteuid() == 0:
            os.chown(export_dir, *tools.writer)
        exported = _run(
            [
                *tools.python_cmd,
                "-m",
                "host_agent.chdump",
                "export",
                tools.runtime_path(partial / "clickhouse"),
            ],
            cwd=tools.project_dir,
            env=tools.env,
            what="ClickHouse export",
        )
        log(f"clickhouse: {exported.strip()}")
        if exporter is not None:
            os.chmod(partial, 0o700)

    with tarfile.open(partial / "data.tar.gz", "w:gz") as archive:
        archived = _archive_data_dir(archive, tools.data_dir, _excluded(tools))
    log(f"data dir archived ({archived} entries)")

    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in partial.rglob("*") if p.is_file()):
        files[str(path.relative_to(partial))] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest["files"] = files
    write_json(partial / "manifest.json", manifest)
    partial.rename(final)
    fsync_dir(backups)
    log(f"backup set {final.name}: {len(files)} files, {sum(f['size'] for f in files.values())} bytes")
    return final


def _archive_data_dir(archive: tarfile.TarFile, root: Path, skip: set[Path]) -> int:
    """Add the data dir without the excluded paths; files that vanish meanwhile are skipped."""
    count = 0
    if not root.exists():
        return 0
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        dirs[:] = sorted(d for d in dirs if base / d not in skip)
        for name in sorted(dirs) + sorted(files):
            path = base / name
            if path in skip:
                continue
            try:
                info = archive.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            except FileNotFoundError:
                continue  # a lock or journal file removed while we walked
            if info.isdir() or info.issym():
                archive.addfile(info)
            elif info.isfile():
                try:
                    with open(path, "rb") as handle:
                        archive.addfile(info, handle)
                except FileNotFoundError:
                    continue
            else:
                continue  # sockets, FIFOs and devices are not data
            count += 1
    return count


def read_manifest(directory: Path) -> dict[str, object]:
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{directory} has no manifest.json; it is not a complete backup set") from None
    except ValueError:
        raise BackupError(f"{directory}/manifest.json is not valid JSON") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        raise BackupError(f"{directory}/manifest.json is not a format-{FORMAT} backup manifest")
    return manifest


def verify_backup(directory: Path) -> dict[str, object]:
    """The manifest, once every file it lists has its recorded size and SHA-256."""
    manifest = read_manifest(directory)
    problems = []
    for name, meta in cast(dict[str, Any], manifest["files"]).items():  # read_manifest checked the type
        path = (directory / name).resolve()
        if directory.resolve() not in path.parents:
            problems.append(f"{name}: outside the backup set")
            continue
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != meta["size"]:
            problems.append(f"{name}: size {path.stat().st_size}, expected {meta['size']}")
        elif sha256_file(path) != meta["sha256"]:
            problems.append(f"{name}: checksum mismatch")
    if problems:
        raise BackupError("backup set is damaged, nothing restored: " + "; ".join(problems))
    return manifest


def restore_database(tools: BackupTools, directory: Path, manifest: dict[str, object]) -> str:
    kind = manifest["database"]
    if kind != tools.database_kind():
        raise BackupError(f"the backup holds a {kind} database but DATABASE_URL is {tools.database_kind()}")
    if kind == "sqlite":
        source = directory / "database.sqlite3"
        target = tools.sqlite_path()
        if not source.exists():
            return "database: the backup has no SQLite file (there was none); left as is"
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(source, target)
        return f"database: SQLite {target} restored"
    # The schema is emptied first: `pg_restore --clean` only drops what the dump holds, so the
    # tables a failed release's migrations created would survive, and the next attempt at the
    # same migration would fail on them. The whole script (the emptying, then the dump as SQL)
    # runs in one transaction, and only once pg_restore has converted all of it: any error
    # leaves the database exactly as it was.
    # Beside the backup sets: never inside a later backup of the data dir.
    fd, name = tempfile.mkstemp(prefix=".restore-", suffix=".sql", dir=directory.parent)
    script = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, open(directory / "database.pgdump", "rb") as dump:
            out.write(EMPTY_PUBLIC_SCHEMA)
            out.flush()
            _run(
                tools.restore_script_command(),
                cwd=tools.project_dir,
                env=tools.env,
                stdin=dump,
                stdout=out,
                what="pg_restore",
            )
        with open(script, "rb") as sql:
            _run(
                tools.apply_script_command(),
                cwd=tools.project_dir,
                env=tools.env,
                stdin=sql,
                what="psql (restore)",
            )
    finally:
        script.unlink(missing_ok=True)
    return "database: PostgreSQL restored into an emptied public schema, in one transaction"


def restore_clickhouse(tools: BackupTools, directory: Path, manifest: dict[str, object]) -> str:
    if not manifest.get("clickhouse"):
        return "clickhouse: not in this backup set"
    out = _run(
        [
            *tools.python_cmd,
            "-m",
            "host_agent.chdump",
            "import",
            tools.runtime_path(directory / "clickhouse"),
        ],
        cwd=tools.project_dir,
        env=tools.env,
        what="ClickHouse import",
    )
    return f"clickhouse: {out.strip()}"


def restore_data_dir(tools: BackupTools, directory: Path) -> str:
    with tarfile.open(directory / "data.tar.gz", "r:gz") as archive:
        archive.extractall(tools.data_dir, filter="data")
    return f"data dir: archive extracted into {tools.data_dir}"


def restore_all(
    tools: BackupTools, directory: Path, *, dry_run: bool = False, include_data_dir: bool = True
) -> list[str]:
    manifest = verify_backup(directory)
    steps = [f"verified {len(cast(dict[str, Any], manifest['files']))} file(s) of {directory.name}"]
    if dry_run:
        return [*steps, "dry run: nothing restored"]
    steps.append(restore_database(tools, directory, manifest))
    steps.append(restore_clickhouse(tools, directory, manifest))
    if include_data_dir:
        steps.append(restore_data_dir(tools, directory))
    return steps


def backup_sets(backups_dir: Path) -> list[Path]:
    """Complete sets, oldest first (names start with a UTC timestamp)."""
    if not backups_dir.exists():
        return []
    return sorted(
        p
        for p in backups_dir.iterdir()
        if p.is_dir() and not p.name.endswith(".partial") and (p / "manifest.json").exists()
    )


def apply_retention(backups_dir: Path, keep: int, protect: Path | None = None) -> list[Path]:
    """Remove all but the newest `keep` sets (never `protect`) and any leftover `.partial` set."""
    removed = []
    sets = backup_sets(backups_dir)
    for old in sets[: max(0, len(sets) - keep)]:
        if protect is not None and old.resolve() == protect.resolve():
            continue
        shutil.rmtree(old)
        removed.append(old)
    for partial in backups_dir.glob("*.partial") if backups_dir.exists() else []:
        shutil.rmtree(partial, ignore_errors=True)
        removed.append(partial)
    return removed
