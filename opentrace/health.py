"""Health (SPEC §11): `/healthz` for the agent and admins, `/healthz/live` and `/healthz/ready` for the proxy.

`/healthz`: the database, broker, ClickHouse and migrations; 200 with every check "ok", or
503 naming the checks that fail. The body names checks only: what failed and why (hosts,
driver messages) goes to the log. The host agent's `healthcheck` step reads `version` from
here to decide whether an update succeeded.

`migrations` compares the database with the migrations *this process* was started with
(`release_migrations()`, taken once when the web app loads), Django's and ClickHouse's.
During an update the old release keeps serving while the new release's files are on disk
and its migrations are applied (SPEC §7): a schema ahead of the release is fine, and files
that appeared on disk after start are not this release's.

`/healthz/live` says the process answers (no dependency is checked: a restart would not fix
one). `/healthz/ready` says it should get traffic: 503 until every check of `/healthz` has
passed once in this process (a new release that is not healthy gets no traffic), and 503 once
the web container is draining
(the file `OPENTRACE_DRAIN_FILE` names exists; the compose preset creates it before it stops
an old web container), so the proxy moves new requests away while in-flight ones finish.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from opentrace.clickhouse import client as clickhouse
from opentrace.clickhouse import ledger
from opentrace.clickhouse.catalog import TemplateContext, load_migrations
from opentrace.clickhouse.ledger import APPLIED
from opentrace.redact import redact
from opentrace.version import running_version

logger = logging.getLogger(__name__)


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class ReleaseMigrations:
    """The migrations on disk when this process loaded: node → the nodes it replaces (squashes)."""

    django: dict[tuple[str, str], tuple[tuple[str, str], ...]]
    clickhouse: tuple[str, ...]


@functools.cache
def release_migrations() -> ReleaseMigrations:
    """Read once per process (opentrace/wsgi.py calls it at start), never again from disk."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    django = {key: tuple(loader.graph.nodes[key].replaces or ()) for key in loader.graph.nodes}
    return ReleaseMigrations(django=django, clickhouse=tuple(m.name for m in load_migrations()))


def check_database() -> None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if urlsplit(url).scheme == "filesystem":
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out"):
            folder = str(options[key])
            if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
                raise CheckFailed(f"broker folder {folder} is missing or not writable")
        return
    with Connection(
        url, connect_timeout=2, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS
    ) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)


# What one run of the checks read from ClickHouse, for the migrations check after it: the
# embedded engine admits one process at a time, so it is opened once per run, not twice.
_run = threading.local()


def check_clickhouse() -> None:
    _run.ledger = None
    context = TemplateContext.from_settings()
    try:
        with clickhouse.connect(busy_timeout=3.0, connect_timeout=3.0) as client:
            client.command("SELECT 1")
            try:
                _run.ledger = ledger.read(client, context)
            except Exception:  # the migrations check reads it again and fails on its own
                logger.warning("reading the ClickHouse migration ledger failed", exc_info=True)
    except clickhouse.ClickHouseError:
        raise
    except Exception as exc:
        raise clickhouse.ClickHouseUnavailable(f"{type(exc).__name__}: {exc}") from exc


def read_ledger() -> dict[str, ledger.LedgerRow]:
    rows = getattr(_run, "ledger", None)
    if rows is not None:
        return rows
    context = TemplateContext.from_settings()
    with clickhouse.connect(busy_timeout=3.0) as client:
        return ledger.read(client, context)


def unapplied_django(release: ReleaseMigrations) -> list[str]:
    applied = set(MigrationRecorder(connections[DEFAULT_DB_ALIAS]).applied_migrations())
    missing = [
        key
        for key, replaces in release.django.items()
        if key not in applied and not (replaces and set(replaces) <= applied)
    ]
    return [f"{app}.{name}" for app, name in sorted(missing)]


def unapplied_clickhouse(release: ReleaseMigrations) -> list[str]:
    rows = read_ledger()
    return [name for name in release.clickhouse if name not in rows or rows[name].status != APPLIED]


def check_migrations() -> None:
    release = release_migrations()
    try:
        missing = unapplied_django(release) + unapplied_clickhouse(release)
    finally:
        _run.ledger = None
    if missing:
        raise CheckFailed(f"{len(missing)} unapplied migration(s): {', '.join(missing[:5])}")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "clickhouse": check_clickhouse,
    "migrations": check_migrations,
}


def run_checks() -> dict[str, str]:
    """Every check's result, "ok" or "error"; why one failed goes to the log, not to the caller."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and "error" in (results["database"], results["clickhouse"]):
            results[name] = "error"  # unknown, and not worth another wait for what is down
            continue
        try:
            check()
        except Exception as exc:  # every failure becomes a named 503, never a 500
            logger.warning("health check %s failed: %s", name, redact(f"{type(exc).__name__}: {exc}"))
            results[name] = "error"
        else:
            results[name] = "ok"
    if all(result == "ok" for result in results.values()):
        healthy_once.set()
    return results


def draining() -> bool:
    path = settings.OPENTRACE_DRAIN_FILE
    return bool(path) and os.path.exists(path)


_refreshing = threading.Lock()
_last: tuple[float, dict[str, str]] | None = None
# Set once every check passed in this process. Until then readiness runs the checks too, so a
# new release that is not healthy never gets traffic (the proxy and `deploy` wait for it, and
# the release it would replace keeps serving); afterwards readiness only asks whether it is
# draining, so a dependency's blip (or the embedded engine held by a migration for a moment)
# does not take every serving web container out of the proxy at once.
healthy_once = threading.Event()


def _fresh(last: tuple[float, dict[str, str]] | None) -> bool:
    """Results still good to give: passing ones for HEALTH_CACHE_SECONDS, failing ones for
    HEALTH_RETRY_SECONDS (a recovering dependency, or a new release, is seen again soon)."""
    if last is None:
        return False
    passing = all(result == "ok" for result in last[1].values())
    ttl = settings.HEALTH_CACHE_SECONDS if passing else settings.HEALTH_RETRY_SECONDS
    return time.monotonic() - last[0] < min(ttl, settings.HEALTH_CACHE_SECONDS)


def recent_checks() -> dict[str, str]:
    """`run_checks()`, run at most once every HEALTH_CACHE_SECONDS by this process while
    they pass, and every HEALTH_RETRY_SECONDS once one failed.

    A proxy, the agent and monitors may ask many times a second; each run opens ClickHouse
    (about 0.1 s for the embedded engine, seconds while another process holds it). One
    caller runs the checks; the others meanwhile get the previous results instead of
    holding a server thread each (only the very first callers wait for a first result).
    """
    global _last
    if settings.HEALTH_CACHE_SECONDS <= 0:
        return run_checks()
    last = _last
    if _fresh(last):
        assert last is not None
        return last[1]
    if not _refreshing.acquire(blocking=last is None):
        assert last is not None
        return last[1]
    try:
        if _last is not None and _last is not last and _fresh(_last):
            return _last[1]  # another caller refreshed while this one waited for the first run
        results = run_checks()
        _last = (time.monotonic(), results)
        return results
    finally:
        _refreshing.release()


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results = recent_checks()
    failing = sorted(name for name, result in results.items() if result != "ok")
    body: dict[str, object] = {
        "status": "ok" if not failing else "error",
        "version": running_version(),
        "checks": results,
    }
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=200 if not failing else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive", "version": running_version()})


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    if draining():
        return JsonResponse({"status": "draining", "version": running_version()}, status=503)
    if not healthy_once.is_set():
        failing = sorted(name for name, result in recent_checks().items() if result != "ok")
        if failing:
            body = {"status": "starting", "version": running_version(), "failing": failing}
            return JsonResponse(body, status=503)
    return JsonResponse({"status": "ready", "version": running_version()})
