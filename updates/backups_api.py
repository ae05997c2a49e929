"""`POST /api/updates/agent/backups`: the agent's list of backup sets (signed like SPEC §6).

Body: `{"agent_id": "...", "sets": [{"name", "created_at", "from_version", "commit",
"size_bytes", "database", "clickhouse_rows": {table: rows}, "verification": {"state",
"at", "detail"}}]}` with at most 100 sets; the table becomes that list. Same status codes
as the other agent endpoints.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from updates.agent_api import BadRequest, _answer, _text, _time, agent_endpoint
from updates.models import BackupSet, Verification

MAX_SETS = 100


def _parse(raw: object, position: int) -> dict[str, Any]:
    where = f"sets[{position}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} is not an object")
    created = _time(raw.get("created_at"), f"{where}.created_at")
    if created is None:
        raise BadRequest(f"{where}.created_at is required")
    size = raw.get("size_bytes", 0)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**62:
        raise BadRequest(f"{where}.size_bytes must be a whole number")
    rows = raw.get("clickhouse_rows") or {}
    if not isinstance(rows, dict) or len(rows) > 200:
        raise BadRequest(f"{where}.clickhouse_rows must be an object")
    clean_rows = {}
    for table, count in rows.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise BadRequest(f"{where}.clickhouse_rows values must be whole numbers")
        clean_rows[_text(table, f"{where}.clickhouse_rows", limit=200)] = count
    check = raw.get("verification") or {}
    if not isinstance(check, dict):
        raise BadRequest(f"{where}.verification must be an object")
    state = check.get("state", Verification.UNVERIFIED)
    if state not in Verification.values:
        raise BadRequest(f"{where}.verification.state must be one of {', '.join(Verification.values)}")
    name = _text(raw.get("name"), f"{where}.name", required=True, limit=200).strip()
    if not name:
        raise BadRequest(f"{where}.name must not be empty")
    return {
        "name": name,
        "created_at": created,
        "from_version": _text(raw.get("from_version"), f"{where}.from_version", limit=64),
        "commit": _text(raw.get("commit"), f"{where}.commit", limit=64),
        "size_bytes": size,
        "database": _text(raw.get("database"), f"{where}.database", limit=16),
        "clickhouse_rows": clean_rows,
        "verification": state,
        "verified_at": _time(check.get("at"), f"{where}.verification.at"),
        "verification_detail": _text(check.get("detail"), f"{where}.verification.detail", limit=4000),
    }


def _backups(data: dict[str, Any]) -> JsonResponse:
    raw_sets = data.get("sets")
    if not isinstance(raw_sets, list) or len(raw_sets) > MAX_SETS:
        raise BadRequest(f"sets must be a list of at most {MAX_SETS} sets")
    sets = [_parse(raw, i) for i, raw in enumerate(raw_sets)]
    if len({s["name"] for s in sets}) != len(sets):
        raise BadRequest("two sets have the same name")
    return _answer(200, {"accepted": BackupSet.replace_all(sets), "duplicates": 0})


backups = agent_endpoint(_backups)
