"""The agent → backend API (SPEC §6): `POST /api/updates/agent/events` and `.../heartbeat`.

Order of checks: method (405), size (413), signature and timestamp (401, before the body
is parsed), body shape (400), replay (401: the same timestamp and signature accepted
before), run (404), state machine (409). Any other failure answers
503 so the agent retries; nothing answers 500. See docs/protocol.md.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from contract import events as shapes
from contract import signing
from opentrace.redact import redact
from updates.models import AcceptedRequest, AgentHeartbeat, EventIn, TransitionRefused, UpdateRun

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
MAX_EVENTS = 1000
MAX_TEXT = 16 * 1024
MAX_LINES = 5000
MAX_SEQ = 2**31 - 1


class BadRequest(Exception):
    pass


def _answer(status: int, payload: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    if status == 405:
        response["Allow"] = "POST"
    return response


class Replayed(Exception):
    pass


def _verify(request: HttpRequest, body: bytes, now: float) -> str | None:
    """None when the request is authentic, else why not."""
    try:
        signing.verify_request(
            settings.OPENTRACE_AGENT_SECRET,
            timestamp=request.headers.get(signing.TIMESTAMP_HEADER, ""),
            signature=request.headers.get(signing.SIGNATURE_HEADER, ""),
            body=body,
            now=now,
        )
    except signing.RequestRejected as exc:
        return str(exc)
    return None


def _claim(request: HttpRequest, now: float) -> None:
    """Refuse a verified (timestamp, signature) pair that was accepted before (SPEC §6)."""
    if not AcceptedRequest.claim(
        int(request.headers[signing.TIMESTAMP_HEADER]),
        request.headers[signing.SIGNATURE_HEADER],
        now=now,
        window=signing.MAX_SKEW_SECONDS,
    ):
        raise Replayed


def agent_endpoint(
    handler: Callable[[dict[str, Any]], JsonResponse],
) -> Callable[[HttpRequest], JsonResponse]:
    @csrf_exempt
    def view(request: HttpRequest) -> JsonResponse:
        try:
            if request.method != "POST":
                return _answer(405, {"error": "only POST is allowed"})
            declared = request.META.get("CONTENT_LENGTH") or "0"
            if not declared.isdigit():
                return _answer(400, {"error": "invalid Content-Length"})
            if int(declared) > MAX_BODY:
                return _answer(413, {"error": f"the body is over {MAX_BODY} bytes"})
            body = request.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                return _answer(413, {"error": f"the body is over {MAX_BODY} bytes"})
            now = time.time()
            problem = _verify(request, body, now)
            if problem is not None:
                return _answer(401, {"error": problem})
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                return _answer(400, {"error": "the body is not UTF-8 JSON"})
            if not isinstance(data, dict):
                return _answer(400, {"error": "the body is not a JSON object"})
            try:
                # One transaction: a request that fails (400, an outage) leaves no claim,
                # so the agent may send the same bytes again.
                with transaction.atomic():
                    _claim(request, now)
                    return handler(data)
            except BadRequest as exc:
                return _answer(400, {"error": str(exc)})
            except Replayed:
                return _answer(401, {"error": "this signed request was already accepted (replay)"})
        except Exception:
            # An outage (database down during deploy) or a bug: never a 500; the agent retries.
            logger.exception("agent API failure")
            return _answer(503, {"error": "temporarily unavailable; retry later"})

    return view


# --- validation ------------------------------------------------------------------------
def _text(value: object, name: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    # PostgreSQL stores neither NUL nor lone surrogates; keep the text, replace those.
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"{name} must be an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadRequest(f"{name} is out of range") from None
    return parsed


def _uuid(value: object, name: str) -> uuid.UUID:
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"{name} must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{name} must be a UUID string") from None


def parse_event(raw: object, position: int) -> EventIn:
    where = f"events[{position}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} is not an object")
    seq = raw.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SEQ:
        raise BadRequest(f"{where}.seq must be a whole number from 1 to {MAX_SEQ}")
    kind = raw.get("kind")
    if kind not in shapes.EVENT_KINDS:
        raise BadRequest(f"{where}.kind must be step, log or run")
    step = _text(raw.get("step"), f"{where}.step", limit=64)
    if step and step not in shapes.STEP_NAMES:
        raise BadRequest(f"{where}.step must be one of {', '.join(shapes.STEP_NAMES)}")
    state = _text(raw.get("state"), f"{where}.state", limit=16)
    if kind == "step":
        if not step:
            raise BadRequest(f"{where}.step is required for a step event")
        if state not in shapes.STEP_STATES:
            raise BadRequest(f"{where}.state must be one of {sorted(shapes.STEP_STATES)}")
    elif kind == "run":
        if state not in shapes.RUN_STATES:
            raise BadRequest(f"{where}.state must be one of {sorted(shapes.RUN_STATES)}")
    elif state:
        raise BadRequest(f"{where}.state is not allowed on a log event")
    lines = raw.get("lines", [])
    if lines is None:
        lines = []
    if not isinstance(lines, list) or len(lines) > MAX_LINES:
        raise BadRequest(f"{where}.lines must be a list of at most {MAX_LINES} strings")
    # Stored and shown to admins (and mailed): credentials in URLs never get that far.
    clean_lines = [redact(_text(line, f"{where}.lines", required=True)) for line in lines]
    return EventIn(
        seq=seq,
        kind=kind,
        step=step,
        state=state,
        message=redact(_text(raw.get("message"), f"{where}.message")),
        lines=clean_lines,
        at=_time(raw.get("at"), f"{where}.at"),
    )


# --- endpoints -------------------------------------------------------------------------
def _events(data: dict[str, Any]) -> JsonResponse:
    run_id = _uuid(data.get("run_id"), "run_id")
    raw_events = data.get("events")
    if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_EVENTS:
        raise BadRequest(f"events must be a list of 1 to {MAX_EVENTS} events")
    events = [parse_event(raw, i) for i, raw in enumerate(raw_events)]
    # The stored registry document (up to 256 KiB) plays no part in taking events.
    run = UpdateRun.objects.filter(pk=run_id).defer("manifest").first()
    if run is None:
        return _answer(404, {"error": f"unknown run {run_id}"})
    try:
        accepted, duplicates = run.record_events(events)
    except TransitionRefused as exc:
        return _answer(409, {"error": exc.message, "seq": exc.seq, "status": run.status})
    return _answer(200, {"accepted": accepted, "duplicates": duplicates})


def _heartbeat(data: dict[str, Any]) -> JsonResponse:
    agent_id = _text(data.get("agent_id"), "agent_id", required=True, limit=255).strip()
    if not agent_id:
        raise BadRequest("agent_id must not be empty")
    busy = data.get("busy", False)
    if not isinstance(busy, bool):
        raise BadRequest("busy must be true or false")
    run_id = None if data.get("run_id") is None else _uuid(data.get("run_id"), "run_id")
    AgentHeartbeat.record(
        agent_id=agent_id,
        agent_version=_text(data.get("agent_version"), "agent_version", limit=64),
        deployed_version=_text(data.get("deployed_version"), "deployed_version", limit=64),
        busy=busy,
        run_id=run_id,
        reported_at=_time(data.get("at"), "at"),
    )
    return _answer(200, {"accepted": 1, "duplicates": 0})


events = agent_endpoint(_events)
heartbeat = agent_endpoint(_heartbeat)
