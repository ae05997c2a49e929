"""`GET /healthz` (SPEC §11): database, broker, ClickHouse and unapplied migrations.

200 with every check "ok", or 503 naming what fails. No authentication and no secrets:
error texts are redacted of credentials and cut short. The host agent's `healthcheck`
step reads `version` from here to decide whether an update succeeded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from opentrace.clickhouse import client as clickhouse
from opentrace.redact import redact
from opentrace.version import running_version

logger = logging.getLogger(__name__)


class CheckFailed(Exception):
    pass


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


def check_clickhouse() -> None:
    clickhouse.ping(busy_timeout=3.0)


def check_migrations() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        raise CheckFailed(f"{len(plan)} unapplied migration(s): {names}")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "clickhouse": check_clickhouse,
    "migrations": check_migrations,
}


def run_checks() -> tuple[dict[str, str], dict[str, str]]:
    results: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and results.get("database") != "ok":
            results[name] = "error"
            errors[name] = "skipped: the database is unavailable"
            continue
        try:
            check()
        except Exception as exc:  # every failure becomes a named 503, never a 500
            logger.warning("health check %s failed: %s", name, redact(str(exc)))
            results[name] = "error"
            errors[name] = redact(f"{type(exc).__name__}: {exc}")[:300]
        else:
            results[name] = "ok"
    return results, errors


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results, errors = run_checks()
    body: dict[str, object] = {
        "status": "ok" if not errors else "error",
        "version": running_version(),
        "checks": results,
    }
    if errors:
        body["failing"] = sorted(errors)
        body["errors"] = errors
    return JsonResponse(body, status=200 if not errors else 503)
