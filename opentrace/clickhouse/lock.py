"""The migration lock: one migration run at a time, across processes and containers.

When Django's database is PostgreSQL the lock is a session advisory lock taken on a
dedicated psycopg connection (not Django's, which `migrate` uses and may close or reset).
Otherwise it is an `flock` on `<DATA_DIR>/migrations.lock`. Both are released by the
operating system or the server when the holder dies, even by SIGKILL: PostgreSQL ends the
session when its socket closes, and the kernel drops an `flock` with the last descriptor.

`ensure_held()` is called before each ClickHouse statement, so a run whose PostgreSQL
session was lost (server restart, network cut) stops instead of racing a new holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from opentrace.clickhouse.errors import LockLost, LockUnavailable
from opentrace.redact import redact

# pg_advisory_lock(int4, int4): "OTMG" (OpenTrace MiGrations) and the lock's number.
ADVISORY_KEY = (0x4F544D47, 1)
LOCK_FILE_NAME = "migrations.lock"
_POLL_SECONDS = 0.2


class MigrationLock(Protocol):
    description: str

    def ensure_held(self) -> None: ...


def _wait(
    try_acquire: Callable[[], bool],
    timeout: float,
    describe_holder: Callable[[], str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    deadline = clock() + max(0.0, timeout)
    while not try_acquire():
        remaining = deadline - clock()
        if remaining <= 0:
            raise LockUnavailable(
                f"another migration run holds the migration lock ({describe_holder()}); "
                f"waited {timeout:g} s — try again when it has finished, or pass a longer --lock-timeout"
            )
        sleep(min(_POLL_SECONDS, remaining))


class PostgresAdvisoryLock:
    def __init__(self, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.settings_dict = connections[alias].settings_dict
        self.description = f"PostgreSQL advisory lock {ADVISORY_KEY} in database {self.settings_dict['NAME']}"
        self.conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        conf = self.settings_dict
        params: dict[str, Any] = {
            "dbname": conf["NAME"],
            "user": conf.get("USER") or None,
            "password": conf.get("PASSWORD") or None,
            "host": conf.get("HOST") or None,
            "port": str(conf["PORT"]) if conf.get("PORT") else None,
            "connect_timeout": 10,
            "application_name": "opentrace-migrations-lock",
            # A holder whose host vanished is noticed by the server within about a minute.
            "keepalives": 1,
            "keepalives_idle": 20,
            "keepalives_interval": 5,
            "keepalives_count": 4,
        }
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "options"):
            if conf.get("OPTIONS", {}).get(key):
                params[key] = conf["OPTIONS"][key]
        try:
            return psycopg.connect(
                autocommit=True, **{key: value for key, value in params.items() if value is not None}
            )
        except psycopg.Error as exc:
            detail = redact(" ".join(str(exc).split()))[:500]
            raise LockUnavailable(
                f"cannot open a PostgreSQL connection for the migration lock: {detail}"
            ) from None

    def _try(self) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", ADVISORY_KEY).fetchone()
        return bool(row[0])

    def _holder(self) -> str:
        try:
            row = self.conn.execute(
                """SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'),
                          a.backend_start
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s
                     AND l.objsubid = 2 AND l.granted AND l.database = (
                         SELECT oid FROM pg_database WHERE datname = current_database())""",
                ADVISORY_KEY,
            ).fetchone()
        except Exception:
            return self.description
        if row is None:
            return self.description
        pid, app, addr, since = row
        return (
            f"{self.description}, held by backend pid {pid} ({app or 'unnamed'} from {addr} "
            f"since {since:%Y-%m-%d %H:%M:%S %Z})"
        )

    def acquire(self, timeout: float) -> None:
        self.conn = self._connect()
        try:
            _wait(self._try, timeout, self._holder)
        except BaseException:
            self.release()
            raise

    def ensure_held(self) -> None:
        try:
            row = self.conn.execute(
                """SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND objsubid = 2
                     AND granted AND pid = pg_backend_pid()""",
                ADVISORY_KEY,
            ).fetchone()
        except Exception as exc:
            raise LockLost(f"the {self.description} was lost ({type(exc).__name__}: {exc})") from None
        if not row or row[0] < 1:
            raise LockLost(f"the {self.description} is no longer held by this run")

    def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            # Closing the session releases the lock too; unlocking first is just tidier.
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", ADVISORY_KEY)
        except Exception:  # noqa: S110 - the session ends below, which releases the lock anyway
            pass
        finally:
            conn.close()


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self.fd: int | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)

    def _try(self) -> bool:
        assert self.fd is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # The file could have been replaced between open and flock; then this lock guards nothing.
        if not self._same_file():
            os.close(self.fd)
            self.fd = self._open()
            return False
        return True

    def _same_file(self) -> bool:
        assert self.fd is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self.fd)
        return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text()[:1000] or "{}")
            return f"{self.description}, held by pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return self.description

    def acquire(self, timeout: float) -> None:
        try:
            self.fd = self._open()
        except OSError as exc:
            raise LockUnavailable(f"cannot open the {self.description}: {exc.strerror}") from None
        try:
            _wait(self._try, timeout, self._holder)
        except BaseException:
            self.release()
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def ensure_held(self) -> None:
        if self.fd is None or not self._same_file():
            raise LockLost(f"the {self.description} was removed while this run held it")

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # drops the flock


def uses_postgres(alias: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[alias].vendor == "postgresql"


def lock_path() -> Path:
    return Path(settings.DATA_DIR) / LOCK_FILE_NAME


def holder_elsewhere() -> str | None:
    """Who holds the migration lock right now (None: nobody), without taking it.

    Best effort, for `status`: an error while looking is reported as nobody.
    """
    try:
        if uses_postgres():
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute(
                    """SELECT l.pid FROM pg_locks l
                       WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s
                         AND l.objsubid = 2 AND l.granted AND l.database = (
                             SELECT oid FROM pg_database WHERE datname = current_database())""",
                    ADVISORY_KEY,
                )
                row = cursor.fetchone()
            return None if row is None else f"PostgreSQL backend pid {row[0]} holds the advisory lock"
        probe = FileLock(lock_path())
        if not probe.path.exists():
            return None
        fd = os.open(probe.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return probe._holder()
        finally:
            os.close(fd)
        return None
    except Exception:
        return None


@contextmanager
def migration_lock(timeout: float) -> Iterator[MigrationLock]:
    """Hold the migration lock for the block, waiting up to `timeout` seconds for it."""
    lock: PostgresAdvisoryLock | FileLock = (
        PostgresAdvisoryLock() if uses_postgres() else FileLock(lock_path())
    )
    lock.acquire(timeout)
    try:
        yield lock
    finally:
        lock.release()
