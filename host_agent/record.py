"""Carrying the update's record across a database restore (SPEC §7; `contract.record`).

PostgreSQL: the restore is one psql script in one transaction. It first locks the record
tables and copies their rows into temporary tables (which `DROP SCHEMA public` leaves alone),
then empties the schema and applies the dump, then replaces the restored record tables' rows
with the copies — the columns both versions have, rows whose required references are gone
left out, and the identity sequences moved past the highest id. Any error rolls all of it
back. SQLite: the same on a copy of the set's file, before it replaces the live one.
"""

# ruff: noqa: S608, E501 - the SQL names only the constant tables of contract.record
from __future__ import annotations

import sqlite3
from pathlib import Path

from contract.record import RECORD_TABLES, RecordTable


def _keep_name(index: int) -> str:
    return f"opentrace_keep_{index}"


def pg_before() -> bytes:
    lines = []
    for index, table in enumerate(RECORD_TABLES):
        lines.append(
            f"DO $$ BEGIN IF to_regclass('public.{table.name}') IS NOT NULL THEN "
            f"EXECUTE 'LOCK TABLE public.{table.name} IN ACCESS EXCLUSIVE MODE'; "
            f"EXECUTE 'CREATE TEMP TABLE {_keep_name(index)} AS SELECT * FROM public.{table.name}'; "
            "END IF; END $$;"
        )
    return ("\n".join(lines) + "\n").encode()


def _pg_select_list(table: RecordTable) -> str:
    """A plpgsql expression building `col, col, CASE … END` for the common columns."""
    cases = " ".join(
        f"WHEN '{column}' THEN format('CASE WHEN k.%I IN (SELECT id FROM public.{target}) THEN k.%I END', a.attname, a.attname)"
        for column, target in table.nullable.items()
    )
    expression = (
        f"CASE a.attname {cases} ELSE format('k.%I', a.attname) END" if cases else "format('k.%I', a.attname)"
    )
    return expression


def pg_after() -> bytes:
    blocks = []
    for index, table in enumerate(RECORD_TABLES):
        keep = _keep_name(index)
        where = " AND ".join(
            f"k.{column} IN (SELECT id FROM public.{target})" for column, target in table.required.items()
        )
        blocks.append(
            f"""DO $$
DECLARE cols text; vals text; seq text;
BEGIN
  IF to_regclass('public.{table.name}') IS NULL OR to_regclass('pg_temp.{keep}') IS NULL THEN RETURN; END IF;
  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum), string_agg({_pg_select_list(table)}, ', ' ORDER BY a.attnum)
    INTO cols, vals
    FROM pg_attribute a
   WHERE a.attrelid = 'public.{table.name}'::regclass AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attname IN (SELECT k.attname FROM pg_attribute k
                        WHERE k.attrelid = 'pg_temp.{keep}'::regclass AND k.attnum > 0 AND NOT k.attisdropped);
  EXECUTE 'DELETE FROM public.{table.name}';
  EXECUTE format('INSERT INTO public.{table.name} (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pg_temp.{keep} k {"WHERE " + where if where else ""}', cols, vals);
  seq := pg_get_serial_sequence('public.{table.name}', 'id');
  IF seq IS NOT NULL THEN
    EXECUTE format('SELECT setval(%L, GREATEST((SELECT max(id) FROM public.{table.name}), 1))', seq);
  END IF;
END $$;"""
        )
    return ("\n".join(blocks) + "\n").encode()


def _columns(db: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [row[1] for row in db.execute(f'PRAGMA "{schema}".table_info("{table}")')]


def sqlite_carry(restored: Path, current: Path) -> int:
    """Replace the record tables' rows in `restored` (a scratch copy) with those of `current`."""
    if not current.exists():
        return 0
    db = sqlite3.connect(f"file:{restored}", uri=True, timeout=60, isolation_level=None)
    moved = 0
    try:
        db.execute("ATTACH DATABASE ? AS cur", (f"file:{current}?mode=ro",))
        db.execute("BEGIN IMMEDIATE")
        for table in RECORD_TABLES:
            mine = _columns(db, "main", table.name)
            theirs = set(_columns(db, "cur", table.name))
            common = [c for c in mine if c in theirs]
            if not mine or not common:
                continue
            values = []
            for column in common:
                if column in table.nullable:
                    target = table.nullable[column]
                    values.append(
                        f'CASE WHEN k."{column}" IN (SELECT id FROM main."{target}") THEN k."{column}" END'
                    )
                else:
                    values.append(f'k."{column}"')
            where = " AND ".join(
                f'k."{column}" IN (SELECT id FROM main."{target}")'
                for column, target in table.required.items()
            )
            db.execute(f'DELETE FROM main."{table.name}"')
            cursor = db.execute(
                f'INSERT INTO main."{table.name}" ({", ".join(chr(34) + c + chr(34) for c in common)}) '
                f'SELECT {", ".join(values)} FROM cur."{table.name}" k {"WHERE " + where if where else ""}'
            )
            moved += cursor.rowcount
        db.execute("COMMIT")
        db.execute("DETACH DATABASE cur")
    finally:
        db.close()
    return moved
