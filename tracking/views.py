"""`POST /api/track` (SPEC §13): validate, make durable, acknowledge. ClickHouse is not involved.

Order of checks: method (405), size (413, from Content-Length before anything is read, then
on the bytes read, capped), write key (401), body (400). The events are acknowledged only
after the buffer has them on disk (`tracking.buffer`): 200 `{"accepted": n}`. When the
buffer or the key store cannot be reached the answer is 503 with `Retry-After`, which SDKs
retry; no input produces a 500.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tracking import keys, records
from tracking.buffer import BufferUnavailable, get_buffer
from tracking.intake import MAX_BODY, Invalid, parse_events

logger = logging.getLogger(__name__)


def _answer(status: int, payload: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    if status == 405:
        response["Allow"] = "POST"
    elif status == 503:
        response["Retry-After"] = "2"
    return response


def _too_large() -> JsonResponse:
    return _answer(413, {"error": f"the body is over {MAX_BODY} bytes"})


@csrf_exempt
def track(request: HttpRequest) -> JsonResponse:
    try:
        if request.method != "POST":
            return _answer(405, {"error": "only POST is allowed"})
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit():
            return _answer(400, {"error": "invalid Content-Length"})
        if int(declared) > MAX_BODY:
            return _too_large()
        try:
            project_id = keys.project_for_key(request.headers.get(keys.HEADER))
        except keys.KeysUnavailable:
            logger.warning("write key lookup failed: the database is unavailable")
            return _answer(503, {"error": "temporarily unavailable; retry later"})
        if project_id is None:
            return _answer(401, {"error": f"unknown or disabled write key ({keys.HEADER})"})
        body = request.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _too_large()
        try:
            events = parse_events(body)
        except Invalid as exc:
            return _answer(400, {"error": str(exc)})
        record = records.Record(project_id=project_id, received_ms=time.time_ns() // 1_000_000, events=events)
        try:
            get_buffer().append(records.encode(record))
        except BufferUnavailable as exc:
            logger.error("tracking events refused (503): %s", exc)
            return _answer(503, {"error": "cannot store events right now; retry later"})
        return _answer(200, {"accepted": len(events)})
    except Exception:
        # A bug or an outage nobody foresaw: the client retries a 503; nothing was acknowledged.
        logger.exception("tracking endpoint failure")
        return _answer(503, {"error": "temporarily unavailable; retry later"})
