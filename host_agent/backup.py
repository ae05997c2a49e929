"""Backup sets and their restore (SPEC §8): `<DATA_DIR>/backups/<UTC timestamp>-<from version>/`.

A set holds the database (`database.sqlite3` through SQLite's backup API, or `database.pgdump`
from `pg_dump -Fc`), ClickHouse's snapshot (`clickhouse/schema.json` and, on the embedded
engine, the parts ClickHouse froze, hard-linked under `clickhouse/parts/<table>/<part>/`;
on a server, a `BACKUP` on its `backups` disk that the schema names), the rest of the data
dir (`data.tar.gz`, read as the data dir's owner by `host_agent.archive`), and
`manifest.json` with versions, commit, and the size of every file and the SHA-256 of every
file but the ClickHouse parts' data (ClickHouse checks those itself as it attaches them,
against the part's own `checksums.txt`, whose SHA-256 is in the manifest). Nothing reads the
rows: the cost of a set does not grow with the number of events beyond the engine's freeze.

A set is written under a `.partial` name and renamed when complete, so a crash never leaves a
half-written set that looks whole; it is 0700 and its files 0600 whatever the umask. The
backups dir is entered once through a descriptor (the data dir's owner can rename it).
A restore checks everything first (`check_restore`), stages what it will put in place, and
only then touches the database, ClickHouse and the data dir (see `restore_all`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from host_agent import record, safefs
from host_agent.clock import UTC
from host_agent.errors import AgentError
from host_agent.fsutil import write_json

FORMAT = 2
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
PART_DATA = "clickhouse/parts/"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
AGENT_ROOT = Path(__file__).resolve().parents[1]


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
    # The data dir's owner (uid, gid) when it is not this process: what reads the data dir,
    # runs the project's Python on the host and writes the SQLite file runs as this user.
    owner: tuple[int, int] | None = None
    # False when `python_cmd` is a container engine client that must run as the agent.
    python_as_owner: bool = True
    # Maps a host path inside the data dir to the path `python_cmd` sees.
    runtime_path: Callable[[Path], str] = str
    clickhouse: bool = True
    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"
    psql: str = "psql"
    # False: CLICKHOUSE_URL is the containers', not the host's (compose): the engine says
    # where it is, and `container_data_dir` maps that back to the host.
    clickhouse_embedded: bool | None = None
    container_data_dir: str | None = None

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
        if self.clickhouse_embedded is False:
            return None
        url = self.env.get("CLICKHOUSE_URL") or f"chdb://{self.data_dir / 'clickhouse'}"
        parts = urlsplit(url)
        return Path(parts.path) if parts.scheme == "chdb" else None

    def engine_root(self, schema: dict[str, Any]) -> Path | None:
        """Where an embedded engine's files are on this host, for a schema it wrote."""
        local = self.chdb_path()
        if local is not None:
            return local
        root = str(schema.get("root") or "")
        inside = (self.container_data_dir or "").rstrip("/")
        if inside and root.startswith(inside + "/") and ".." not in Path(root).parts:
            return self.data_dir / root[len(inside) + 1 :]
        return None

    def python_user(self) -> tuple[int, int] | None:
        return self.owner if self.python_as_owner else None

    def manage(self, *args: str) -> list[str]:
        return [*self.python_cmd, "manage.py", *args]


def data_owner(data_dir: Path) -> tuple[int, int] | None:
    """Who the agent acts as inside the data dir: its owner, when that is not this process."""
    try:
        info = os.lstat(data_dir)
    except FileNotFoundError:
        return None
    if os.geteuid() != 0 or info.st_uid == 0:
        return None
    return info.st_uid, info.st_gid


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    for chunk in iter(lambda: os.read(fd, 1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _dir_size(path: Path, skip: set[Path]) -> int:
    total = 0
    if not path.exists():
        return 0
    for folder, dirs, files in os.walk(path):
        base = Path(folder)
        dirs[:] = [d for d in dirs if base / d not in skip]
        for name in files:
            try:
                info = os.lstat(base / name)
            except FileNotFoundError:
                continue
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
    user: tuple[int, int] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> str:
    as_user: dict[str, Any] = {"pass_fds": pass_fds}
    if user is not None:
        as_user.update(user=user[0], group=user[1], extra_groups=[])
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
            **as_user,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{what}: {exc}") from None
    if done.returncode != 0:
        raise BackupError(
            f"{what} failed ({done.returncode}): {done.stderr.decode('utf-8', 'replace')[-800:]}"
        )
    return done.stdout.decode("utf-8", "replace") if done.stdout else ""


def _agent_python(
    tools: BackupTools, module: str, *args: str, user: tuple[int, int] | None, **kw: Any
) -> str:
    """One of the agent's own helpers (host_agent.archive, host_agent.sqlite_restore) as `user`."""
    env = {**tools.env, "PYTHONDONTWRITEBYTECODE": "1"}
    # The helper's source is read here and passed with -c: the data dir's owner need not be
    # able to read the agent's install (it may sit in a root-only directory).
    return _run(
        [helper_python(user), "-c", helper_source(module), *args], cwd=Path("/"), env=env, user=user, **kw
    )


_HELPERS = {
    "host_agent.archive": ("host_agent/archive.py",),
    "host_agent.sqlite_restore": (
        "contract/record.py",
        "host_agent/record.py",
        "host_agent/sqlite_restore.py",
    ),
}


def helper_source(module: str) -> str:
    """One self-contained script: the helper's module and the project modules it imports."""
    parts = []
    for name in _HELPERS[module]:
        lines = (AGENT_ROOT / name).read_text(encoding="utf-8").splitlines()
        parts += [
            line
            for line in lines
            if line.strip() != "from __future__ import annotations"
            and not line.startswith(("from contract.record import", "from host_agent.record import"))
        ]
    return "from __future__ import annotations\n" + "\n".join(parts) + "\n"


def helper_python(user: tuple[int, int] | None) -> str:
    """The interpreter for a helper run as `user`: the agent's own may sit where only root can read
    (a pyenv under /root); the helpers need nothing but the standard library."""
    if user is None:
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def _open_sqlite_source(tools: BackupTools, source: Path) -> int:
    """The app's SQLite file, opened without following a link; it must be the data dir owner's."""
    try:
        fd = os.open(source, safefs.FILE_FLAGS)
    except OSError as exc:
        raise BackupError(f"the SQLite file {source}: {exc.strerror} (a link is never followed)") from None
    info = os.fstat(fd)
    owner = tools.owner[0] if tools.owner is not None else None
    if not stat.S_ISREG(info.st_mode) or (owner is not None and info.st_uid != owner):
        os.close(fd)
        raise BackupError(f"the SQLite file {source} is not a regular file of the data dir's owner")
    return fd


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


def kept_names(tools: BackupTools, schema: dict[str, Any] | None = None) -> set[str]:
    """Top-level names of the data dir that a set does not carry in `data.tar.gz`.

    `schema`, a ClickHouse snapshot's: an embedded engine inside the data dir that only the
    engine itself names (compose, where CLICKHOUSE_URL is the containers') is left out too; its
    tables are in the snapshot, and the data-dir swap must keep what the snapshot restored.
    """
    names = set(EXCLUDED)
    inside: list[Path] = []
    chdb = tools.chdb_path()
    if chdb is not None:
        inside.append(chdb)
    engine = tools.engine_root(schema) if schema and schema.get("engine") == "embedded" else None
    if engine is not None:
        inside.append(engine)
    if tools.database_kind() == "sqlite":
        db = tools.sqlite_path()
        inside += [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")]
    root = tools.data_dir.absolute()
    for path in inside:
        try:
            names.add(path.absolute().relative_to(root).parts[0])
        except (ValueError, IndexError):
            continue
    return names


def check_free_space(tools: BackupTools, target: Path) -> None:
    """A set is at most about the size of the data dir without ClickHouse (its parts are linked)."""
    skip = {tools.data_dir / "backups"}
    chdb = tools.chdb_path()
    if chdb is not None:
        skip.add(chdb)
    need = _dir_size(tools.data_dir, skip) + MARGIN_BYTES
    free = shutil.disk_usage(target).free
    if free < need:
        raise BackupError(
            f"not enough free space in {target}: {free // 2**20} MiB free, {need // 2**20} MiB needed"
        )


def _open_backups(data_dir: Path) -> tuple[int, int]:
    """(data dir fd, backups dir fd): the backups dir as this agent's own, 0700."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        data_fd = safefs.open_dir(data_dir)
        try:
            return data_fd, safefs.private_dir(data_fd, "backups", what=f"{data_dir / 'backups'}")
        except BaseException:
            os.close(data_fd)
            raise
    except safefs.Unsafe as exc:
        raise BackupError(str(exc)) from None


def create_backup(
    tools: BackupTools,
    *,
    from_version: str,
    commit: str,
    now: datetime | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Path:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    old_umask = os.umask(0o077)
    data_fd, backups_fd = _open_backups(tools.data_dir)
    try:
        backups = safefs.fd_path(backups_fd)
        base = f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{from_version}"
        if not _SAFE_NAME.match(base):
            raise BackupError(f"{base!r} cannot name a backup set")
        name, suffix = base, 1
        while os.path.lexists(backups / name):
            suffix += 1
            name = f"{base}.{suffix}"
        partial = f"{name}.partial"
        check_free_space(tools, backups)
        os.mkdir(partial, 0o700, dir_fd=backups_fd)
        set_fd = os.open(partial, safefs.DIR_FLAGS, dir_fd=backups_fd)
        try:
            manifest = _fill_set(tools, set_fd, name, moment, from_version, commit, log)
            write_json(safefs.fd_path(set_fd, "manifest.json"), manifest)
        except BaseException:
            shutil.rmtree(partial, dir_fd=backups_fd, ignore_errors=True)
            raise
        finally:
            os.close(set_fd)
        os.rename(partial, name, src_dir_fd=backups_fd, dst_dir_fd=backups_fd)
        os.fsync(backups_fd)
        files: dict[str, dict[str, Any]] = manifest["files"]
        log(f"backup set {name}: {len(files)} files, {sum(f['size'] for f in files.values())} bytes")
        return tools.data_dir / "backups" / name
    finally:
        os.close(backups_fd)
        os.close(data_fd)
        os.umask(old_umask)


def _fill_set(
    tools: BackupTools,
    set_fd: int,
    name: str,
    moment: datetime,
    from_version: str,
    commit: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    here = safefs.fd_path(set_fd)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": moment.isoformat().replace("+00:00", "Z"),
        "from_version": from_version,
        "commit": commit,
        "database": tools.database_kind(),
        "clickhouse": tools.clickhouse,
    }
    if tools.database_kind() == "sqlite":
        source = tools.sqlite_path()
        if source.exists():
            os.close(safefs.create_private(set_fd, "database.sqlite3"))
            source_fd = _open_sqlite_source(tools, source)
            try:
                # The backup API copies a consistent snapshot even while the app writes; it
                # reads the inode opened here, never a name swapped meanwhile.
                _sqlite_copy(safefs.fd_path(source_fd), here / "database.sqlite3")
            finally:
                os.close(source_fd)
        log(f"database: SQLite {source} copied")
    else:
        with os.fdopen(safefs.create_private(set_fd, "database.pgdump"), "wb") as out:
            _run(tools.dump_command(), cwd=tools.project_dir, env=tools.env, stdout=out, what="pg_dump")
        log("database: PostgreSQL dumped with pg_dump -Fc")

    schema: dict[str, Any] | None = None
    if tools.clickhouse:
        schema = _snapshot_clickhouse(tools, set_fd, name)
        manifest["clickhouse_engine"] = schema["engine"]
        if schema["engine"] == "server":
            manifest["clickhouse_backup"] = schema["backup"]
        tables = schema["tables"]
        parts = sum(len(t["parts"]) for t in tables)
        rows = sum(int(t["rows"]) for t in tables)
        manifest["clickhouse_rows"] = {t["name"]: int(t["rows"]) for t in tables if t["parts"] or t["rows"]}
        log(f"clickhouse: {len(tables)} table(s) snapshotted by the engine ({parts} part(s), {rows} row(s))")

    try:
        # Opened here, as root, and inherited: the owner the archive is read as may not be able
        # to look up the data dir's path (a parent only root can search, e.g. /root/…).
        data_fd = safefs.open_dir(tools.data_dir)
    except (OSError, safefs.Unsafe) as exc:
        raise BackupError(f"archiving the data dir: {exc}") from None
    try:
        with os.fdopen(safefs.create_private(set_fd, "data.tar.gz"), "wb") as out:
            skip = [arg for kept in sorted(kept_names(tools, schema)) for arg in ("--skip", kept)]
            _agent_python(
                tools,
                "host_agent.archive",
                str(tools.data_dir),
                "--dir-fd",
                str(data_fd),
                *skip,
                user=tools.owner,
                stdout=out,
                what="archiving the data dir",
                pass_fds=(data_fd,),
            )
    finally:
        os.close(data_fd)
    log("data dir archived, read as its owner" if tools.owner else "data dir archived")
    manifest["files"] = _describe_files(here)
    return manifest


def _describe_files(root: Path) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for file_name in sorted(names):
            path = Path(folder) / file_name
            rel = str(path.relative_to(root))
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            entry: dict[str, Any] = {"size": info.st_size}
            if not rel.startswith(PART_DATA) or file_name == "checksums.txt":
                entry["sha256"] = sha256_file(path)
            files[rel] = entry
    return files


def _snapshot_clickhouse(tools: BackupTools, set_fd: int, name: str) -> dict[str, Any]:
    # ClickHouse escapes anything but [A-Za-z0-9_] in the shadow dir's name.
    snapshot = "opentrace_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    out = _run(
        tools.manage("clickhouse_snapshot", "freeze", snapshot),
        cwd=tools.project_dir,
        env=tools.env,
        what="ClickHouse freeze",
        user=tools.python_user(),
    )
    schema: dict[str, Any] = {}
    try:
        try:
            schema = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BackupError(f"ClickHouse freeze printed no schema: {out[-400:]!r}") from None
        clickhouse_fd = safefs.private_dir(set_fd, "clickhouse", what="the set's clickhouse/")
        try:
            with os.fdopen(
                safefs.create_private(clickhouse_fd, "schema.json"), "w", encoding="utf-8"
            ) as handle:
                json.dump(schema, handle, indent=2)
            if schema.get("engine") == "embedded":
                _link_frozen_parts(tools, schema, clickhouse_fd)
        finally:
            os.close(clickhouse_fd)
        return schema
    finally:
        _unfreeze(tools, snapshot, schema)


def _unfreeze(tools: BackupTools, snapshot: str, schema: dict[str, Any]) -> None:
    """The set has its own links now: the freeze goes (only links to parts, nothing else)."""
    root = tools.engine_root(schema)
    if root is None:
        return  # a server's BACKUP stays on its disk
    try:
        root_fd = safefs.open_dir(root)
    except (OSError, safefs.Unsafe):
        return
    try:
        shadow_fd = safefs.open_below(root_fd, Path("shadow"))
    except (OSError, safefs.Unsafe):
        os.close(root_fd)
        return
    try:
        # rmtree with a dir_fd never follows a link, whatever the app put there meanwhile.
        shutil.rmtree(snapshot, dir_fd=shadow_fd, ignore_errors=True)
    finally:
        os.close(shadow_fd)
        os.close(root_fd)


def _safe(name: object, what: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise BackupError(f"{what} {name!r} is not a plain name")
    return name


def _link_frozen_parts(tools: BackupTools, schema: dict[str, Any], clickhouse_fd: int) -> None:
    """Hard-link the frozen parts into the set, reading the shadow dir by descriptor only."""
    root = tools.engine_root(schema)
    if root is None:
        raise BackupError(f"the embedded engine's path {schema.get('root')!r} is not in the data dir")
    try:
        root_fd = safefs.open_dir(root)
    except (OSError, safefs.Unsafe) as exc:
        raise BackupError(f"ClickHouse engine path: {exc}") from None
    parts_fd = safefs.private_dir(clickhouse_fd, "parts", what="the set's clickhouse/parts")
    try:
        for table in schema["tables"]:
            if not table["parts"]:
                continue
            table_fd = safefs.private_dir(parts_fd, _safe(table["name"], "table"), what="a table's parts")
            try:
                shadow_fd = safefs.open_below(root_fd, Path(table["shadow"]))
            except (OSError, safefs.Unsafe) as exc:
                raise BackupError(f"the frozen parts of {table['name']}: {exc}") from None
            try:
                for part in table["parts"]:
                    source = safefs.open_below(shadow_fd, Path(_safe(part, "part")))
                    target = safefs.private_dir(table_fd, part, what="a part")
                    try:
                        _link_tree(source, target)
                    finally:
                        os.close(source)
                        os.close(target)
            finally:
                os.close(shadow_fd)
                os.close(table_fd)
    except safefs.Unsafe as exc:
        raise BackupError(f"ClickHouse snapshot: {exc}") from None
    finally:
        os.close(parts_fd)
        os.close(root_fd)


def _link_tree(source_fd: int, target_fd: int) -> None:
    for entry in sorted(os.listdir(source_fd)):
        _safe(entry, "part file")
        try:
            fd = os.open(entry, safefs.FILE_FLAGS, dir_fd=source_fd)
        except OSError as exc:
            raise BackupError(
                f"frozen part file {entry}: {exc.strerror} (a link is never followed)"
            ) from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                sub = safefs.private_dir(target_fd, entry, what="a part's folder")
                try:
                    _link_tree(fd, sub)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(info.st_mode):
                _link_or_copy(fd, info, target_fd, entry)
            else:
                raise BackupError(f"frozen part file {entry} is not a regular file")
        finally:
            os.close(fd)


def _link_or_copy(fd: int, info: os.stat_result, target_fd: int, name: str) -> None:
    try:
        # The opened inode itself, never a name that could be swapped meanwhile.
        os.link(safefs.fd_path(fd), name, dst_dir_fd=target_fd, follow_symlinks=True)
    except OSError:
        # Another file system, or hard links refused: a copy (the engine's files, not rows).
        out = safefs.create_private(target_fd, name)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            left = info.st_size
            while left > 0:
                sent = os.sendfile(out, fd, None, min(left, 1 << 30))
                if sent == 0:
                    break
                left -= sent
        finally:
            os.close(out)
        return
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{directory} has no manifest.json; it is not a complete backup set") from None
    except ValueError:
        raise BackupError(f"{directory}/manifest.json is not valid JSON") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") not in (1, FORMAT)
        or not isinstance(manifest.get("files"), dict)
    ):
        raise BackupError(f"{directory}/manifest.json is not a format-{FORMAT} backup manifest")
    return manifest


def _open_set(directory: Path) -> int:
    try:
        fd = safefs.open_dir(directory)
    except FileNotFoundError:
        raise BackupError(f"{directory} does not exist") from None
    except safefs.Unsafe as exc:
        raise BackupError(str(exc)) from None
    info = os.fstat(fd)
    if info.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise BackupError(
            f"{directory} belongs to uid {info.st_uid}: only a set this agent made (or root) is restored"
        )
    return fd


def verify_backup(directory: Path) -> dict[str, Any]:
    """The manifest, once every file it lists has its recorded size and SHA-256, and is no link."""
    set_fd = _open_set(directory)
    try:
        here = safefs.fd_path(set_fd)
        manifest = read_manifest(here)
        problems = []
        for name, meta in manifest["files"].items():
            rel = Path(name)
            if rel.is_absolute() or ".." in rel.parts or not isinstance(meta, dict):
                problems.append(f"{name}: outside the backup set")
                continue
            try:
                parent = safefs.open_below(set_fd, rel.parent)
            except (OSError, safefs.Unsafe):
                problems.append(f"{name}: missing")
                continue
            try:
                fd = os.open(rel.name, safefs.FILE_FLAGS, dir_fd=parent)
            except OSError:
                problems.append(f"{name}: missing (or a link)")
                continue
            finally:
                os.close(parent)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    problems.append(f"{name}: not a regular file")
                elif info.st_size != meta.get("size"):
                    problems.append(f"{name}: size {info.st_size}, expected {meta.get('size')}")
                elif "sha256" in meta and _sha256_fd(fd) != meta["sha256"]:
                    problems.append(f"{name}: checksum mismatch")
                elif "sha256" not in meta and not name.startswith(PART_DATA):
                    problems.append(f"{name}: no checksum recorded")
            finally:
                os.close(fd)
        if problems:
            raise BackupError("backup set is damaged, nothing restored: " + "; ".join(problems))
        return manifest
    finally:
        os.close(set_fd)


@dataclass
class RestorePlan:
    """What `check_restore` found: everything a restore needs, checked before anything changes."""

    directory: Path
    manifest: dict[str, Any]
    schema: dict[str, Any] | None
    members: int
    lines: list[str]


def _load_schema(directory: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    if not manifest.get("clickhouse"):
        return None
    if manifest.get("format") == 1:
        raise BackupError(
            "this set was made by an agent before 1.2 (ClickHouse rows exported by host_agent.chdump); "
            "restore it with that release's restore_all.py"
        )
    try:
        schema: dict[str, Any] = json.loads(
            (directory / "clickhouse" / "schema.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError) as exc:
        raise BackupError(f"clickhouse/schema.json: {exc}") from None
    if schema.get("format") != 1 or schema.get("engine") not in ("embedded", "server"):
        raise BackupError("clickhouse/schema.json is not a format-1 ClickHouse schema")
    files = manifest["files"]
    for table in schema.get("tables", []):
        _safe(table.get("name"), "table")
        for part in table.get("parts", []):
            _safe(part, "part")
            if f"{PART_DATA}{table['name']}/{part}/checksums.txt" not in files:
                raise BackupError(f"clickhouse: part {part} of {table['name']} is not in the set")
    return schema


def _check_members(tools: BackupTools, directory: Path, schema: dict[str, Any] | None = None) -> int:
    """Every member of data.tar.gz passes tarfile's `data` filter and stays out of what is kept."""
    kept = kept_names(tools, schema)
    count = 0
    # The filter judges where links lead against a destination: an empty directory of our own
    # (never the live data dir, where the app could make any name lead anywhere).
    try:
        with (
            tempfile.TemporaryDirectory(prefix="opentrace-check-") as where,
            tarfile.open(directory / "data.tar.gz", "r:gz") as archive,
        ):
            for member in archive:
                top = Path(member.name).parts[0] if Path(member.name).parts else ""
                if top in kept:
                    raise BackupError(
                        f"data.tar.gz: member {member.name!r} would replace {top}/, which a restore keeps; "
                        "nothing restored"
                    )
                try:
                    tarfile.data_filter(member, where)
                except tarfile.FilterError as exc:
                    raise BackupError(
                        f"data.tar.gz: member {member.name!r} refused ({exc}); nothing restored"
                    ) from None
                count += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"data.tar.gz cannot be read ({exc}); nothing restored") from None
    return count


def check_restore(tools: BackupTools, directory: Path, *, include_data_dir: bool = True) -> RestorePlan:
    """Everything a restore checks, without changing anything (`--dry-run` runs exactly this)."""
    manifest = verify_backup(directory)
    lines = [f"verified {len(manifest['files'])} file(s) of {directory.name}"]
    kind = manifest.get("database")
    if kind != tools.database_kind():
        raise BackupError(f"the backup holds a {kind} database but DATABASE_URL is {tools.database_kind()}")
    schema = _load_schema(directory, manifest)
    if schema is not None:
        expected = "embedded" if tools.engine_root(schema) is not None else "server"
        if schema["engine"] != expected and tools.clickhouse_embedded is not False:
            raise BackupError(
                f"the set's ClickHouse snapshot is from the {schema['engine']} engine; "
                f"this install uses a {expected} one"
            )
        lines.append(f"clickhouse: {len(schema['tables'])} table(s) in the snapshot")
    members = 0
    if include_data_dir:
        members = _check_members(tools, directory, schema)
        lines.append(f"data.tar.gz: {members} member(s) pass the checks")
    return RestorePlan(directory, manifest, schema, members, lines)


def _scratch_dir(parent_fd: int, prefix: str) -> tuple[str, int]:
    name = f"{prefix}{secrets.token_hex(6)}"
    os.mkdir(name, 0o700, dir_fd=parent_fd)
    return name, os.open(name, safefs.DIR_FLAGS, dir_fd=parent_fd)


def _chown_tree(fd: int, owner: tuple[int, int]) -> None:
    """`fd`'s tree to `owner`: links themselves (never what they point to), files and folders."""
    os.fchown(fd, *owner)
    for entry in os.listdir(fd):
        if stat.S_ISLNK(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
            os.chown(entry, *owner, dir_fd=fd, follow_symlinks=False)
            continue
        child = os.open(entry, safefs.FILE_FLAGS, dir_fd=fd)
        try:
            if stat.S_ISDIR(os.fstat(child).st_mode):
                _chown_tree(child, owner)
            else:
                os.fchown(child, *owner)
        finally:
            os.close(child)


def restore_database(
    tools: BackupTools, directory: Path, manifest: dict[str, Any], *, keep_record: bool = True
) -> str:
    """The database as the set has it; the update's record (contract.record) kept as it is now."""
    kind = manifest["database"]
    if kind != tools.database_kind():
        raise BackupError(f"the backup holds a {kind} database but DATABASE_URL is {tools.database_kind()}")
    if kind == "sqlite":
        return _restore_sqlite(tools, directory, keep_record)
    # The schema is emptied first: `pg_restore --clean` only drops what the dump holds, so the
    # tables a failed release's migrations created would survive, and the next attempt at the
    # same migration would fail on them. The whole script (the record saved, the emptying, the
    # dump as SQL, the record put back) runs in one transaction, and only once pg_restore has
    # converted all of it: any error leaves the database exactly as it was.
    old_umask = os.umask(0o077)
    data_fd, backups_fd = _open_backups(tools.data_dir)
    name = f".restore-{secrets.token_hex(6)}.sql"
    try:
        with (
            os.fdopen(safefs.create_private(backups_fd, name), "wb") as out,
            open(directory / "database.pgdump", "rb") as dump,
        ):
            if keep_record:
                out.write(record.pg_before())
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
            if keep_record:
                out.write(record.pg_after())
        with open(safefs.fd_path(backups_fd, name), "rb") as sql:
            _run(
                tools.apply_script_command(),
                cwd=tools.project_dir,
                env=tools.env,
                stdin=sql,
                what="psql (restore)",
            )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=backups_fd)
        os.close(backups_fd)
        os.close(data_fd)
        os.umask(old_umask)
    kept = ", the update's record kept as it is now" if keep_record else ""
    return f"database: PostgreSQL restored into an emptied public schema, in one transaction{kept}"


def _restore_sqlite(tools: BackupTools, directory: Path, keep_record: bool) -> str:
    source = directory / "database.sqlite3"
    target = tools.sqlite_path()
    if not source.exists():
        return "database: the backup has no SQLite file (there was none); left as is"
    target.parent.mkdir(parents=True, exist_ok=True)
    # The live file sits in the data dir: it is written by a helper running as the data dir's
    # owner, from a scratch copy staged beside it, so no link planted there is followed as root.
    try:
        parent_fd = safefs.open_dir(target.parent)
    except safefs.Unsafe as exc:
        raise BackupError(f"the SQLite file's folder: {exc}") from None
    name, scratch_fd = _scratch_dir(parent_fd, ".restore-db-")
    try:
        with (
            open(source, "rb") as src,
            os.fdopen(safefs.create_private(scratch_fd, "database.sqlite3"), "wb") as out,
        ):
            shutil.copyfileobj(src, out, 1 << 20)
        if tools.owner is not None:
            _chown_tree(scratch_fd, tools.owner)
        args = [str(safefs.fd_path(parent_fd, f"{name}/database.sqlite3")), str(target)]
        restored = _agent_python(
            tools,
            "host_agent.sqlite_restore",
            *(["--keep-record"] if keep_record else []),
            *args,
            user=tools.owner,
            what="SQLite restore",
            pass_fds=(parent_fd,),
        )
    finally:
        os.close(scratch_fd)
        shutil.rmtree(name, dir_fd=parent_fd, ignore_errors=True)
        os.close(parent_fd)
    return f"database: SQLite {target} restored; {restored.strip()}"


def restore_clickhouse(tools: BackupTools, directory: Path, manifest: dict[str, Any]) -> str:
    if not manifest.get("clickhouse"):
        return "clickhouse: not in this backup set"
    schema = _load_schema(directory, manifest)
    assert schema is not None
    chdb = tools.engine_root(schema)
    # The staging dir sits where the engine's process can move parts from: inside the engine
    # path (the same file system as its tables) or, for a server, in the data dir.
    where = chdb if schema["engine"] == "embedded" and chdb is not None else tools.data_dir
    where.mkdir(parents=True, exist_ok=True)
    try:
        parent_fd = safefs.open_dir(where)
    except safefs.Unsafe as exc:
        raise BackupError(f"ClickHouse staging: {exc}") from None
    name, staging_fd = _scratch_dir(parent_fd, "restore-")
    try:
        with os.fdopen(safefs.create_private(staging_fd, "schema.json"), "w", encoding="utf-8") as out:
            json.dump(schema, out)
        if schema["engine"] == "embedded":
            set_fd = _open_set(directory)
            try:
                source = safefs.open_below(set_fd, Path("clickhouse/parts"))
            except (OSError, safefs.Unsafe):
                source = None
            finally:
                os.close(set_fd)
            if source is not None:
                target = safefs.private_dir(staging_fd, "parts", what="ClickHouse staging")
                try:
                    _link_tree(source, target)
                finally:
                    os.close(source)
                    os.close(target)
        os.fchmod(staging_fd, 0o700)
        # The engine's process (the project's Python as the data dir's owner, or the web
        # container's user, who is the same uid) moves the parts out of the staging dir.
        if tools.owner is not None:
            _chown_tree(staging_fd, tools.owner)
        out_text = _run(
            tools.manage("clickhouse_snapshot", "restore", tools.runtime_path(where / name)),
            cwd=tools.project_dir,
            env=tools.env,
            what="ClickHouse restore",
            user=tools.python_user(),
        )
    finally:
        os.close(staging_fd)
        shutil.rmtree(name, dir_fd=parent_fd, ignore_errors=True)
        os.close(parent_fd)
    return f"clickhouse: {out_text.strip()}"


def stage_data_dir(tools: BackupTools, directory: Path) -> tuple[int, str]:
    """Extract data.tar.gz into a fresh directory beside the data dir: (parent fd, its name).

    The `data` filter extracts as whoever runs it (ownership in the archive is ignored): as
    root, everything is then given to the data dir's owner, or the app could not read its own
    files after a restore. The staging dir is root's and 0700 until the swap: nothing of the
    app's can reach into it meanwhile.
    """
    parent_fd = safefs.open_dir(tools.data_dir.absolute().parent)
    name, staging_fd = _scratch_dir(parent_fd, f".{tools.data_dir.name}.restore-")
    try:
        with tarfile.open(directory / "data.tar.gz", "r:gz") as archive:
            archive.extractall(safefs.fd_path(staging_fd), filter="data")
        if tools.owner is not None:
            _chown_tree(staging_fd, tools.owner)
    except (tarfile.TarError, OSError) as exc:
        os.close(staging_fd)
        shutil.rmtree(name, dir_fd=parent_fd, ignore_errors=True)
        os.close(parent_fd)
        raise BackupError(f"data.tar.gz could not be extracted ({exc}); nothing restored") from None
    os.close(staging_fd)
    return parent_fd, name


def swap_data_dir(
    tools: BackupTools, parent_fd: int, staged: str, schema: dict[str, Any] | None = None
) -> str:
    """Move what a restore keeps from the live data dir into the staged one, then swap them."""
    kept_here = kept_names(tools, schema)
    live = tools.data_dir.name
    live_fd = safefs.open_below(parent_fd, Path(live))
    staged_fd = os.open(staged, safefs.DIR_FLAGS, dir_fd=parent_fd)
    try:
        for kept in sorted(kept_here):
            try:
                os.rename(kept, kept, src_dir_fd=live_fd, dst_dir_fd=staged_fd)
            except FileNotFoundError:
                continue
        info = os.fstat(live_fd)
        os.fchown(staged_fd, info.st_uid, info.st_gid)
        os.fchmod(staged_fd, stat.S_IMODE(info.st_mode))
        safefs.exchange(parent_fd, live, staged)
    finally:
        os.close(live_fd)
        os.close(staged_fd)
    # What was swapped out (the old data dir) is removed without following any link in it.
    shutil.rmtree(staged, dir_fd=parent_fd, ignore_errors=True)
    return f"data dir: replaced by the set's archive (kept as they are: {', '.join(sorted(kept_here))})"


def restore_data_dir(tools: BackupTools, directory: Path) -> str:
    parent_fd, staged = stage_data_dir(tools, directory)
    try:
        return swap_data_dir(tools, parent_fd, staged)
    finally:
        os.close(parent_fd)


def restore_all(
    tools: BackupTools,
    directory: Path,
    *,
    dry_run: bool = False,
    include_data_dir: bool = True,
    keep_record: bool = True,
) -> list[str]:
    """Check everything, stage the data dir, then the database, ClickHouse, and the swap."""
    plan = check_restore(tools, directory, include_data_dir=include_data_dir)
    steps = list(plan.lines)
    if dry_run:
        return [*steps, "dry run: nothing restored"]
    staged: tuple[int, str] | None = stage_data_dir(tools, directory) if include_data_dir else None
    try:
        steps.append(restore_database(tools, directory, plan.manifest, keep_record=keep_record))
        steps.append(restore_clickhouse(tools, directory, plan.manifest))
        if staged is not None:
            steps.append(swap_data_dir(tools, *staged, plan.schema))
    finally:
        if staged is not None:
            shutil.rmtree(staged[1], dir_fd=staged[0], ignore_errors=True)
            os.close(staged[0])
    return steps


def backup_sets(backups_dir: Path) -> list[Path]:
    """Complete sets, oldest first (names start with a UTC timestamp)."""
    if not backups_dir.is_dir() or backups_dir.is_symlink():
        return []
    return sorted(
        p
        for p in backups_dir.iterdir()
        if p.is_dir()
        and not p.is_symlink()
        and not p.name.endswith(".partial")
        and (p / "manifest.json").exists()
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
    for partial in (
        backups_dir.glob("*.partial") if backups_dir.is_dir() and not backups_dir.is_symlink() else []
    ):
        shutil.rmtree(partial, ignore_errors=True)
        removed.append(partial)
    return removed
