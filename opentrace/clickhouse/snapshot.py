"""ClickHouse's part of a backup set, made by ClickHouse itself (SPEC §8); no row passes through Python.

Embedded engine (chdb): `freeze(name)` runs `ALTER TABLE … FREEZE WITH NAME` on every
MergeTree table, which hard-links the table's active parts under `<engine path>/shadow/<name>/`
in milliseconds whatever the row count, and returns the schema beside it (each table's
CREATE statement, engine, and where its frozen parts are). The host agent then links those
files into the set and calls `unfreeze(name)`. `restore(staging)` drops every table,
recreates them from the schema, moves each part into the new table's `detached/` and
`ATTACH PART`s it — the engine checks the part as it attaches it.

Server: `BACKUP DATABASE … TO Disk('backups', '<name>')` (the `backups` disk that
`deploy/clickhouse/backups.xml` configures, inside the server's own volume) and
`RESTORE DATABASE … FROM Disk(…)`.

`verify(staging)` attaches the parts into a scratch engine in a temporary directory (its own
process) and counts the rows: the set is proven restorable without touching the live data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from opentrace.clickhouse import client as clickhouse

SCHEMA_FILE = "schema.json"
BACKUP_DISK = "backups"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
_NO_DATA = {"View", "MaterializedView", "LiveView", "Dictionary", "Memory"}


class SnapshotError(Exception):
    pass


class TableEntry(TypedDict):
    name: str
    engine: str
    create: str
    # Embedded only: the frozen parts, relative to the engine path, and their names.
    shadow: str | None
    parts: list[str]
    rows: int


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SnapshotError(f"{name!r} is not a valid snapshot name")
    return name


def _tables(client: Any, db: str) -> list[tuple[str, str, str, list[str]]]:
    return list(
        client.query(
            "SELECT name, engine, create_table_query, data_paths FROM system.tables "
            "WHERE database = {db:String} AND NOT is_temporary ORDER BY metadata_modification_time, name",
            parameters={"db": db},
        ).result_rows
    )


def _parts(client: Any, db: str, table: str) -> tuple[list[str], int]:
    rows = client.query(
        "SELECT name, rows FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active "
        "ORDER BY name",
        parameters={"db": db, "t": table},
    ).result_rows
    return [name for name, _ in rows], sum(int(n) for _, n in rows)


def _engine_root() -> Path:
    target = clickhouse._target()
    assert target.path is not None
    return target.path.resolve()


def freeze(name: str) -> dict[str, Any]:
    """Snapshot every table; returns the schema document the set keeps as `clickhouse/schema.json`."""
    _check_name(name)
    db = clickhouse.database()
    entries: list[TableEntry] = []
    with clickhouse.connect() as client:
        if not clickhouse.is_embedded():
            client.command(f"BACKUP DATABASE `{db}` TO Disk('{BACKUP_DISK}', '{name}')")
            entries.extend(_entry(table, engine, create) for table, engine, create, _ in _tables(client, db))
            return {"format": 1, "engine": "server", "database": db, "backup": name, "tables": entries}
        root = _engine_root()
        for table, engine, create, paths in _tables(client, db):
            entry = _entry(table, engine, create)
            if engine.endswith("MergeTree"):
                # The parts listed are the ones the freeze links: no insert reaches this
                # table meanwhile (the tracking flusher holds during an update).
                entry["parts"], entry["rows"] = _parts(client, db, table)
                client.command(f"ALTER TABLE `{db}`.`{table}` FREEZE WITH NAME '{name}'")
                relative = Path(paths[0]).resolve().relative_to(root)
                entry["shadow"] = str(Path("shadow") / name / relative)
            elif engine not in _NO_DATA:
                raise SnapshotError(f"table {table} has engine {engine}, which cannot be snapshotted")
            entries.append(entry)
    return {
        "format": 1,
        "engine": "embedded",
        "database": db,
        "backup": name,
        "root": str(root),  # as this process sees it (in a container: its own path)
        "tables": entries,
    }


def _entry(table: str, engine: str, create: str) -> TableEntry:
    return {"name": table, "engine": engine, "create": create, "shadow": None, "parts": [], "rows": 0}


def unfreeze(name: str) -> None:
    _check_name(name)
    if clickhouse.is_embedded():
        shutil.rmtree(_engine_root() / "shadow" / name, ignore_errors=True)


def _drop_all(client: Any, db: str) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    # Views first, so no view outlives the table it reads; then everything else, including
    # tables created after the backup (by the failed release).
    tables = _tables(client, db)
    for table, _engine, _, _ in sorted(tables, key=lambda t: t[1] not in _NO_DATA):
        client.command(f"DROP TABLE IF EXISTS `{db}`.`{table}` SYNC")


def _create(client: Any, entry: TableEntry, source_db: str, db: str) -> None:
    create = entry["create"]
    if source_db != db:
        create = create.replace(f"{source_db}.", f"{db}.", 1)
    client.command(create)


def _attach_parts(client: Any, db: str, entry: TableEntry, staged: Path, root: Path) -> int:
    paths = client.query(
        "SELECT data_paths FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": db, "t": entry["name"]},
    ).result_rows[0][0]
    detached = Path(paths[0]) / "detached"
    detached.mkdir(parents=True, exist_ok=True)
    for part in entry["parts"]:
        os.rename(staged / entry["name"] / part, detached / part)
        client.command(f"ALTER TABLE `{db}`.`{entry['name']}` ATTACH PART '{part}'")
    return len(entry["parts"])


def load_schema(staging: Path) -> dict[str, Any]:
    try:
        schema: dict[str, Any] = json.loads((staging / SCHEMA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{staging / SCHEMA_FILE}: {exc}") from None
    if schema.get("format") != 1 or not isinstance(schema.get("tables"), list):
        raise SnapshotError(f"{staging / SCHEMA_FILE} is not a format-1 ClickHouse schema")
    for entry in schema["tables"]:
        names = [entry.get("name"), schema.get("database"), *entry.get("parts", [])]
        if not all(isinstance(n, str) and _NAME.match(n) for n in names):
            raise SnapshotError(f"{staging / SCHEMA_FILE}: a table, database or part name is not plain")
    return schema


def restore(staging: Path) -> str:
    """Replace every table with the set's; `staging` holds schema.json and parts/<table>/<part>/."""
    schema = load_schema(staging)
    db = clickhouse.database()
    with clickhouse.connect() as client:
        _drop_all(client, db)
        if schema["engine"] == "server":
            client.command(
                f"RESTORE DATABASE `{schema['database']}` AS `{db}` "
                f"FROM Disk('{BACKUP_DISK}', '{_check_name(schema['backup'])}') "
                "SETTINGS allow_non_empty_tables = true"
            )
            tables = len(schema["tables"])
            return f"restored {tables} table(s) into {db} from the server's backup {schema['backup']}"
        root = _engine_root()
        attached = 0
        for entry in schema["tables"]:
            _create(client, entry, schema["database"], db)
            if entry["parts"]:
                attached += _attach_parts(client, db, entry, staging / "parts", root)
    return f"restored {len(schema['tables'])} table(s) into {db}, {attached} part(s) attached"


def verify(staging: Path) -> dict[str, Any]:
    """Attach a copy of the set's parts into a scratch engine; rows per table as the engine counts them.

    Runs chdb directly on a temporary path: this process must not hold the live engine.
    """
    schema = load_schema(staging)
    if schema["engine"] == "server":
        return {
            "tables": {t["name"]: None for t in schema["tables"]},
            "note": "server backups are checked by RESTORE",
        }
    from chdb import session

    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="opentrace-verify-") as scratch:
        engine = session.Session(str(Path(scratch) / "engine"))
        try:
            db = schema["database"]
            engine.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
            for entry in schema["tables"]:
                if entry["engine"] in _NO_DATA:
                    continue
                engine.query(entry["create"])
                if not entry["parts"]:
                    counts[entry["name"]] = 0
                    continue
                path = (
                    engine.query(
                        # Names checked by load_schema().
                        f"SELECT data_paths[1] FROM system.tables "  # noqa: S608
                        f"WHERE database = '{db}' AND name = '{entry['name']}'",
                        "TSVRaw",
                    )
                    .bytes()
                    .decode()
                    .strip()
                )
                for part in entry["parts"]:
                    shutil.copytree(staging / "parts" / entry["name"] / part, Path(path) / "detached" / part)
                    engine.query(f"ALTER TABLE `{db}`.`{entry['name']}` ATTACH PART '{part}'")
                counted = engine.query(f"SELECT count() FROM `{db}`.`{entry['name']}`", "TSVRaw")  # noqa: S608
                found = int(counted.bytes())
                if found != entry["rows"]:
                    raise SnapshotError(
                        f"{entry['name']}: {found} rows attached, the set says {entry['rows']}"
                    )
                counts[entry["name"]] = found
        finally:
            engine.close()
    return {"tables": counts}
