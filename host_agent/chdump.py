"""Export and re-import OpenTrace's ClickHouse tables: `python -m host_agent.chdump export|import DIR`.

Run by the agent with the project's Python from the project directory (in `compose`, inside
the web container), because it needs clickhouse-connect and OpenTrace's own ClickHouse
settings — the agent itself stays free of both. Each table becomes `<name>.sql` (its CREATE
statement) and `<name>.native` (its rows in ClickHouse's Native format); `tables.json` lists
them in creation order. Views get only their statement.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType

_DATA_ENGINES_WITHOUT_ROWS = {"View", "MaterializedView", "LiveView", "Dictionary"}


def _connect() -> tuple[ModuleType, str]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opentrace.settings")
    import django

    django.setup()
    from opentrace.clickhouse import client as clickhouse

    return clickhouse, clickhouse.database()


def export(directory: Path) -> int:
    clickhouse, db = _connect()
    directory.mkdir(parents=True, exist_ok=True)
    listed: list[dict[str, str]] = []
    with clickhouse.connect() as client:
        rows = client.query(
            "SELECT name, create_table_query, engine FROM system.tables "
            "WHERE database = {db:String} AND NOT is_temporary ORDER BY metadata_modification_time, name",
            parameters={"db": db},
        ).result_rows
        for name, create, engine in rows:
            entry = {"name": name, "engine": engine, "create": f"{name}.sql"}
            (directory / f"{name}.sql").write_text(create, encoding="utf-8")
            if engine not in _DATA_ENGINES_WITHOUT_ROWS:
                data = client.raw_query(f"SELECT * FROM `{db}`.`{name}`", fmt="Native")  # noqa: S608 - names from system.tables
                (directory / f"{name}.native").write_bytes(data)
                entry["data"] = f"{name}.native"
            listed.append(entry)
    (directory / "tables.json").write_text(json.dumps({"database": db, "tables": listed}, indent=2))
    print(f"exported {len(listed)} table(s) of {db}")
    return 0


def restore(directory: Path) -> int:
    clickhouse, db = _connect()
    index = json.loads((directory / "tables.json").read_text())
    source_db = index["database"]
    with clickhouse.connect() as client:
        client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        existing = client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND NOT is_temporary",
            parameters={"db": db},
        ).result_rows
        # Tables the backup does not know were created after it (by the failed release): drop them too.
        for (name,) in existing:
            client.command(f"DROP TABLE IF EXISTS `{db}`.`{name}` SYNC")
        for entry in index["tables"]:
            create = (directory / entry["create"]).read_text(encoding="utf-8")
            if source_db != db:
                create = create.replace(f"{source_db}.", f"{db}.", 1)
            client.command(create)
            if entry.get("data"):
                data = (directory / entry["data"]).read_bytes()
                if data:
                    client.raw_insert(f"`{db}`.`{entry['name']}`", insert_block=data, fmt="Native")
    print(f"restored {len(index['tables'])} table(s) into {db}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"export", "import"}:
        print("usage: python -m host_agent.chdump export|import DIR", file=sys.stderr)
        return 2
    directory = Path(argv[1])
    return export(directory) if argv[0] == "export" else restore(directory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
