"""The one ClickHouse boundary of OpenTrace: every ClickHouse query goes through `connect()`.

Production talks to a ClickHouse server over HTTP. The embedded engine (chdb, through
clickhouse-connect's `chdb://` backend) has a rule the server does not: only one process
can hold an engine path at a time, and closing the last client releases it. So the
embedded engine is opened per use and closed promptly, and `connect()` waits briefly
(retrying with backoff) while another process — the web server, the Celery worker or a
`manage.py` command run by the agent — holds it. An engine still busy after that is a
`ClickHouseBusy` error, never a crash.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from opentrace.config import ClickHouseTarget

logger = logging.getLogger(__name__)

# What chdb says when the path is held by another process (or this process holds another path).
_BUSY_MARKERS = ("Error initializing EmbeddedServer", "EmbeddedServer already initialized")


class ClickHouseError(Exception):
    """A ClickHouse operation failed (`ClickHouseUnavailable`: trying again may help)."""


class ClickHouseUnavailable(ClickHouseError):
    """The server cannot be reached, or the embedded engine cannot be loaded."""


class ClickHouseBusy(ClickHouseUnavailable):
    """The embedded engine's path is held by another process past the wait limit."""


def _target() -> ClickHouseTarget:
    return settings.CLICKHOUSE


def database() -> str:
    """The database OpenTrace's tables live in (`${db}` in migrations)."""
    return _target().database


def is_embedded() -> bool:
    return _target().embedded


def _open(target: ClickHouseTarget, connect_timeout: float) -> Client:
    try:
        import clickhouse_connect
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise ClickHouseUnavailable(f"clickhouse-connect is not installed: {exc}") from exc
    kwargs: dict[str, Any] = {"dsn": target.dsn, "database": "default"}
    if target.embedded:
        assert target.path is not None
        target.path.mkdir(parents=True, exist_ok=True)
        try:
            import chdb  # noqa: F401 - only to give a clear error when it is missing
        except ImportError:
            raise ClickHouseUnavailable(
                "CLICKHOUSE_URL is chdb:// but the embedded engine (chdb-core) is not installed; "
                "install requirements-embedded.txt or point CLICKHOUSE_URL at a server"
            ) from None
    else:
        kwargs.update(
            connect_timeout=connect_timeout, send_receive_timeout=300, autogenerate_session_id=False
        )
    return clickhouse_connect.get_client(**kwargs)


def _is_busy(exc: Exception) -> bool:
    text = str(exc)
    return any(marker in text for marker in _BUSY_MARKERS)


def open_client(
    *,
    busy_timeout: float | None = None,
    connect_timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Client:
    """Open a client, waiting up to `busy_timeout` seconds while the embedded engine is held."""
    target = _target()
    limit = settings.CLICKHOUSE_BUSY_TIMEOUT if busy_timeout is None else busy_timeout
    deadline = clock() + limit
    delay = 0.05
    while True:
        try:
            return _open(target, connect_timeout)
        except ClickHouseError:
            raise
        except Exception as exc:
            if target.embedded and _is_busy(exc):
                if clock() >= deadline:
                    raise ClickHouseBusy(
                        f"the embedded ClickHouse engine at {target.path} is held by another process "
                        f"(waited {limit:.0f} s); try again when it is free ({_describe(exc)})"
                    ) from exc
                sleep(min(delay, max(0.0, deadline - clock())) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 1.0)
                continue
            raise ClickHouseUnavailable(f"cannot connect to ClickHouse: {_describe(exc)}") from exc


@contextmanager
def connect(*, busy_timeout: float | None = None, connect_timeout: float = 5.0) -> Iterator[Client]:
    """A ClickHouse client for one unit of work; closed (and the embedded path released) after."""
    client = open_client(busy_timeout=busy_timeout, connect_timeout=connect_timeout)
    try:
        yield client
    finally:
        try:
            client.close()
        except Exception:  # closing must never mask the real outcome
            logger.warning("closing the ClickHouse client failed", exc_info=True)


def _describe(exc: Exception) -> str:
    """The error text without credentials that a DSN may carry."""
    from opentrace.redact import redact

    return redact(f"{type(exc).__name__}: {exc}")[:500]


def ping(*, busy_timeout: float | None = None) -> None:
    """Raise a `ClickHouseError` unless ClickHouse answers a trivial query."""
    try:
        with connect(busy_timeout=busy_timeout, connect_timeout=3.0) as client:
            client.command("SELECT 1")
    except ClickHouseError:
        raise
    except Exception as exc:
        raise ClickHouseUnavailable(_describe(exc)) from exc
