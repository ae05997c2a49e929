"""Validating a `POST /api/track` body (SPEC §13) into the events a `Record` carries.

    {"events": [{"event": "...", "distinct_id": "...", "timestamp": "<ISO 8601>",
                 "properties": {...}, "event_id": "<uuid, optional>"}]}

Every problem is an `Invalid` whose message names the field (`events[3].timestamp: ...`);
the view answers it with 400. What passes is safe to store: strings are valid UTF-8,
timestamps are within what ClickHouse's `DateTime64(3)` holds, properties are a JSON object
without NaN or Infinity, and every event has an `event_id` (a new UUID when none was sent).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tracking.records import Event

MAX_BODY = 1024 * 1024
MAX_EVENTS = 1000
MAX_NAME = 200  # event and distinct_id
MAX_TIMESTAMP_TEXT = 64
# Accepted timestamps: 1970-01-01 up to (not including) 2100-01-01, UTC.
MIN_TIMESTAMP_MS = 0
MAX_TIMESTAMP_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
EVENT_FIELDS = frozenset({"event", "distinct_id", "timestamp", "properties", "event_id"})


class Invalid(ValueError):
    """The body breaks the contract; the message says where and how."""


def _reject_constant(name: str) -> float:
    raise Invalid(f"the body contains {name}, which JSON does not allow")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"the number {text[:40]} is out of range")
    return value


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except Invalid:
        raise
    except RecursionError:
        raise Invalid("the body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise Invalid(f"the body is not valid JSON ({exc})") from None


def _clean(value: str) -> str:
    # A JSON string may hold a lone surrogate ("\ud800"), which has no UTF-8 form: it
    # becomes U+FFFD (through UTF-16, whose decoder replaces exactly those).
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def _name(raw: dict[str, Any], field: str, where: str) -> str:
    if field not in raw:
        raise Invalid(f"{where}.{field} is missing")
    value = raw[field]
    if not isinstance(value, str):
        raise Invalid(f"{where}.{field} must be a string")
    if not value.strip():
        raise Invalid(f"{where}.{field} must not be empty")
    if len(value) > MAX_NAME:
        raise Invalid(f"{where}.{field} is longer than {MAX_NAME} characters")
    return _clean(value)


def _timestamp_ms(raw: dict[str, Any], where: str) -> int:
    if "timestamp" not in raw:
        raise Invalid(f"{where}.timestamp is missing")
    value = raw["timestamp"]
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_TEXT:
        raise Invalid(f"{where}.timestamp must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{where}.timestamp {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # no offset given: the documented reading is UTC
    try:
        # Integer arithmetic: float seconds * 1000 can land a millisecond off.
        millis = (parsed - _EPOCH) // _MILLISECOND
    except (OverflowError, ValueError):
        raise Invalid(f"{where}.timestamp {value!r} is out of range") from None
    if not MIN_TIMESTAMP_MS <= millis < MAX_TIMESTAMP_MS:
        raise Invalid(f"{where}.timestamp {value!r} is outside 1970-01-01 .. 2099-12-31")
    return millis


def _event_id(raw: dict[str, Any], where: str) -> uuid.UUID:
    value = raw.get("event_id")
    if value is None:
        return uuid.uuid4()
    if not isinstance(value, str) or len(value) > 64:
        raise Invalid(f"{where}.event_id must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid(f"{where}.event_id {value[:64]!r} is not a UUID") from None


def parse_event(raw: object, position: int) -> Event:
    where = f"events[{position}]"
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be an object")
    unknown = set(raw) - EVENT_FIELDS
    if unknown:
        raise Invalid(f"{where} has unknown field(s): {', '.join(sorted(unknown)[:5])}")
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise Invalid(f"{where}.properties must be an object")
    return Event(
        event_id=_event_id(raw, where),
        event=_name(raw, "event", where),
        distinct_id=_name(raw, "distinct_id", where),
        timestamp_ms=_timestamp_ms(raw, where),
        properties=properties,
    )


def parse_events(body: bytes) -> tuple[Event, ...]:
    """The events of a request body, or `Invalid`."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    unknown = set(data) - {"events"}
    if unknown:
        raise Invalid(f"the body has unknown field(s): {', '.join(sorted(unknown)[:5])}")
    raw_events = data.get("events")
    if not isinstance(raw_events, list):
        raise Invalid("events must be a list")
    if not raw_events:
        raise Invalid("events must not be empty")
    if len(raw_events) > MAX_EVENTS:
        raise Invalid(f"too many events: {len(raw_events)} (at most {MAX_EVENTS} per request)")
    return tuple(parse_event(raw, i) for i, raw in enumerate(raw_events))
