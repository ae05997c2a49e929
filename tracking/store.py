"""Writing buffered events into ClickHouse `events` (opentrace/clickhouse/migrations/0001_events.sql).

Rows are built from records in Python: every value is already of the column's type, so an
insert can only fail for a reason outside the batch (ClickHouse busy or down, the table
missing), and the flusher retries the same batch later.

An event is identified by `(project_id, event_id)`. Within a batch the first copy wins;
against ClickHouse, `existing_ids()` finds the events of a suspect batch that a previous,
interrupted flush already stored, using the sort key's prefix (project, day) so it reads
only the days the batch touches.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentrace.clickhouse import client as clickhouse
from tracking.records import Record

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

COLUMNS = ("project_id", "event_id", "event", "distinct_id", "timestamp", "properties", "received_at")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID_CHUNK = 1000

EventKey = tuple[int, uuid.UUID]


def table() -> str:
    return f"{clickhouse.database()}.events"


def _moment(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


def _properties(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: keep it, escaped
            text = json.dumps(value, separators=(",", ":"))
    return text


def rows(records: Iterable[Record]) -> list[list[Any]]:
    """One row per distinct (project, event_id), in buffer order; later copies are retries."""
    seen: set[EventKey] = set()
    out: list[list[Any]] = []
    for record in records:
        received = _moment(record.received_ms)
        for event in record.events:
            key = (record.project_id, event.event_id)
            if key in seen:
                continue
            seen.add(key)
            out.append(
                [
                    record.project_id,
                    event.event_id,
                    event.event,
                    event.distinct_id,
                    _moment(event.timestamp_ms),
                    _properties(event.properties),
                    received,
                ]
            )
    return out


def existing_ids(ch: Client, batch_rows: list[list[Any]]) -> set[EventKey]:
    """The (project, event_id) of `batch_rows` that ClickHouse already holds."""
    by_project: dict[int, list[list[Any]]] = defaultdict(list)
    for row in batch_rows:
        by_project[row[0]].append(row)
    found: set[EventKey] = set()
    # The table name is our configured database's (a checked identifier); values are bound.
    sql = (
        f"SELECT project_id, event_id FROM {table()} "  # noqa: S608
        "WHERE project_id = {project:UInt64} AND toDate(timestamp) IN {days:Array(Date)} "
        "AND event_id IN {ids:Array(UUID)}"
    )
    for project_id, project_rows in by_project.items():
        for start in range(0, len(project_rows), _ID_CHUNK):
            chunk = project_rows[start : start + _ID_CHUNK]
            days: list[date] = sorted({row[4].date() for row in chunk})
            result = ch.query(
                sql, parameters={"project": project_id, "days": days, "ids": [r[1] for r in chunk]}
            )
            found.update((int(p), e) for p, e in result.result_rows)
    return found


def insert(ch: Client, batch_rows: list[list[Any]]) -> None:
    if batch_rows:
        ch.insert(table(), batch_rows, column_names=list(COLUMNS))
