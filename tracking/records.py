"""What the endpoint buffers for one accepted request, and its byte form in a buffer.

A `Record` is one request's events after validation: every event already has its
`event_id` (assigned at acceptance when the SDK sent none, so that flushing the same
record twice writes the same rows) and its timestamp in milliseconds. The encoding is
compact JSON, ASCII only (non-ASCII text and lone surrogates are escaped, so any string the
JSON parser accepted can be written and read back unchanged):

    {"v": 1, "p": <project id>, "r": <received at, ms>, "e": [["<event_id hex>", "<event>",
     "<distinct_id>", <timestamp ms>, {<properties>}], ...]}

`decode()` checks every field, so a damaged or foreign record is a `CorruptRecord`, never a
row ClickHouse would refuse.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

VERSION = 1


class CorruptRecord(ValueError):
    """The bytes are not a record this version wrote."""


@dataclass(frozen=True, slots=True)
class Event:
    event_id: uuid.UUID
    event: str
    distinct_id: str
    timestamp_ms: int
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    project_id: int
    received_ms: int
    events: tuple[Event, ...]


def encode(record: Record) -> bytes:
    payload = {
        "v": VERSION,
        "p": record.project_id,
        "r": record.received_ms,
        "e": [[e.event_id.hex, e.event, e.distinct_id, e.timestamp_ms, e.properties] for e in record.events],
    }
    # allow_nan=False: the endpoint never accepts NaN or Infinity; ClickHouse's JSON has neither.
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise CorruptRecord(f"{what} is not a non-negative 64-bit integer")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CorruptRecord(f"{what} is not a string")
    return value


def decode(data: bytes) -> Record:
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord(f"not JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("v") != VERSION:
        raise CorruptRecord("not a version 1 record")
    raw_events = payload.get("e")
    if not isinstance(raw_events, list) or not raw_events:
        raise CorruptRecord("no events")
    events = []
    for raw in raw_events:
        if not isinstance(raw, list) or len(raw) != 5:
            raise CorruptRecord("an event is not a 5-item list")
        try:
            event_id = uuid.UUID(hex=_str(raw[0], "event_id"))
        except ValueError:
            raise CorruptRecord("event_id is not a UUID") from None
        if not isinstance(raw[4], dict):
            raise CorruptRecord("properties is not an object")
        events.append(
            Event(
                event_id=event_id,
                event=_str(raw[1], "event"),
                distinct_id=_str(raw[2], "distinct_id"),
                timestamp_ms=_int(raw[3], "timestamp"),
                properties=raw[4],
            )
        )
    return Record(
        project_id=_int(payload.get("p"), "project id"),
        received_ms=_int(payload.get("r"), "received at"),
        events=tuple(events),
    )
