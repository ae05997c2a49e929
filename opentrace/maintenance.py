"""The maintenance page of a `local` install while a downtime release migrates (SPEC §7).

`MaintenanceMiddleware` comes first: while `<DATA_DIR>/run/maintenance` (`contract.maintenance`)
names the version this process runs, the dashboard gets an HTML page and `/healthz` a JSON
answer, both 503 with `Retry-After`, and nothing else of the app runs for them. `/api/`
keeps working: the tracking endpoint acknowledges events into its durable buffer as ever,
and the agent's reports reach the update's record. `/healthz/live` still says the process
lives. The file is read on every request, without following a link or blocking on a FIFO;
a missing, unreadable or foreign file serves as usual. (compose: the proxy serves the page.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from contract import maintenance
from contract.files import UnsafeFile, read_bounded
from opentrace.version import running_version

EXEMPT = ("/api/", "/healthz/live")
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{retry}">
<title>OpenTrace is being updated</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#333}}
</style>
</head>
<body>
<h1>OpenTrace is being updated</h1>
<p>This update needs a short maintenance window. The dashboard will be back in a few minutes;
this page reloads by itself.</p>
</body>
</html>
"""


def flag_path() -> Path:
    return Path(settings.DATA_DIR) / maintenance.RUN_DIR / maintenance.NAME


def under_maintenance() -> bool:
    """The flag names the release this process runs."""
    try:
        data = read_bounded(flag_path(), limit=maintenance.LIMIT, what="the maintenance flag").data
    except (OSError, UnsafeFile):
        return False
    return maintenance.stopped_version(data) == running_version()


def maintenance_response(request: HttpRequest) -> HttpResponse:
    retry = maintenance.RETRY_AFTER_SECONDS
    response: HttpResponse
    if request.path.startswith("/healthz"):
        response = JsonResponse(
            {"status": "maintenance", "version": running_version(), "failing": ["maintenance"]}, status=503
        )
    else:
        response = HttpResponse(PAGE.format(retry=retry), status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(retry)
    response["Cache-Control"] = "no-store"
    # Expected, not an error: Django would log every 503 as one (django.utils.log.log_response).
    response._has_been_logged = True  # type: ignore[attr-defined]  # a private flag log_response reads
    return response


class MaintenanceMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(EXEMPT) and under_maintenance():
            return maintenance_response(request)
        return self.get_response(request)
