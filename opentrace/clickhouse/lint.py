"""Rules every ClickHouse migration follows, checked by `clickhouse_migrate lint`.

- Re-runnable: `CREATE ... IF NOT EXISTS`, `DROP ... IF EXISTS`, and the `IF [NOT] EXISTS`
  forms of `ALTER TABLE` column/index/projection/constraint actions, so `resume` and a
  repeated run after a crash are safe.
- Cluster-ready: no literal `ON CLUSTER` (write `${on_cluster}`, which is empty on one
  node), DDL carries `${on_cluster}`, MergeTree engines carry `${replicated}`, and tables are
  named `${db}.<table>`.
- Valid: `ALTER TABLE IF EXISTS` is not ClickHouse syntax (it would fail only at run time).
- Expand first, contract later: statements that drop or rewrite data (DROP, TRUNCATE,
  DELETE, RENAME, MODIFY/CLEAR COLUMN, MODIFY TTL, ...) are refused unless the file says
  `-- opentrace: contract`, the mark of a migration shipped after no release needs the old
  shape any more.
- Reversible, or saying why not: a `-- down` part whose statements undo the forward ones
  (a rollback runs them, SPEC §7), or a line `-- irreversible: <reason>` (a rollback past
  it restores the backup instead). Down statements follow the rules above, except that
  they may be destructive: undoing a CREATE is a DROP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opentrace.clickhouse.catalog import Migration

_F = re.IGNORECASE


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, _F)


_DDL = _rx(r"^(CREATE|ALTER|DROP|RENAME|TRUNCATE|EXCHANGE|ATTACH|DETACH|OPTIMIZE)\b")
_CREATE = _rx(
    r"^CREATE\s+(?!OR\s+REPLACE\b)(?:TEMPORARY\s+)?"
    r"(?P<kind>DATABASE|TABLE|(?:MATERIALIZED\s+|LIVE\s+|WINDOW\s+)?VIEW|DICTIONARY|FUNCTION|ROLE|USER|"
    r"ROW\s+POLICY|QUOTA|SETTINGS\s+PROFILE|NAMED\s+COLLECTION|INDEX)\b(?P<rest>.*)$"
)
_DROP = _rx(
    r"^DROP\s+(?:TEMPORARY\s+)?(?P<kind>DATABASE|TABLE|VIEW|DICTIONARY|FUNCTION|INDEX|ROLE|USER|"
    r"ROW\s+POLICY|QUOTA|SETTINGS\s+PROFILE|NAMED\s+COLLECTION)\b(?P<rest>.*)$"
)
_ALTER_IF_EXISTS = _rx(r"^ALTER\s+(?:TEMPORARY\s+)?TABLE\s+IF\s+EXISTS\b")
_ALTER = _rx(r"^ALTER\s+(?:TEMPORARY\s+)?TABLE\b")
_LITERAL_ON_CLUSTER = _rx(r"\bON\s+CLUSTER\b")
_MERGE_TREE_ENGINE = _rx(r"\bENGINE\s*=\s*(?P<prefix>\$\{replicated\})?(?P<engine>\w*MergeTree)\b")
_TARGET = _rx(
    r"^(?:CREATE|ALTER|DROP|TRUNCATE|OPTIMIZE|ATTACH|DETACH)\s+.*?"
    r"\b(?:TABLE|VIEW|DICTIONARY)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?P<target>[^\s(]+)"
)

# ALTER TABLE actions that need an IF [NOT] EXISTS guard to be re-runnable.
_GUARDED_ACTIONS = [
    (_rx(r"\bADD\s+(?P<what>COLUMN|INDEX|PROJECTION|CONSTRAINT|STATISTICS)\b(?!\s+IF\s+NOT\s+EXISTS\b)"),
     "IF NOT EXISTS"),
    (_rx(r"\b(?P<what>DROP|CLEAR|MODIFY|RENAME|COMMENT)\s+(?:COLUMN|INDEX|PROJECTION|CONSTRAINT)\b"
         r"(?!\s+IF\s+EXISTS\b)"),
     "IF EXISTS"),
]  # fmt: skip

_DESTRUCTIVE = [
    (_rx(r"^DROP\b"), "DROP"),
    (_rx(r"^TRUNCATE\b"), "TRUNCATE"),
    (_rx(r"^DELETE\s+FROM\b"), "DELETE"),
    (_rx(r"^RENAME\b"), "RENAME"),
    (_rx(r"^EXCHANGE\b"), "EXCHANGE"),
    (_rx(r"^DETACH\b"), "DETACH"),
    (_rx(r"^CREATE\s+OR\s+REPLACE\s+(?:TABLE|DICTIONARY)\b"), "CREATE OR REPLACE TABLE"),
    (_rx(r"^ALTER\b.*\bDROP\s+(?:COLUMN|INDEX|PROJECTION|CONSTRAINT|PARTITION|PART|DETACHED)\b"),
     "ALTER DROP"),
    (_rx(r"^ALTER\b.*\bDETACH\s+(?:PARTITION|PART)\b"), "ALTER DETACH"),
    (_rx(r"^ALTER\b.*\bREPLACE\s+PARTITION\b"), "ALTER REPLACE PARTITION"),
    (_rx(r"^ALTER\b.*\bMOVE\s+PARTITION\b"), "ALTER MOVE PARTITION"),
    (_rx(r"^ALTER\b.*\bCLEAR\s+(?:COLUMN|INDEX|PROJECTION)\b"), "ALTER CLEAR"),
    (_rx(r"^ALTER\b.*\bDELETE\s+WHERE\b"), "ALTER DELETE"),
    (_rx(r"^ALTER\b.*\bUPDATE\b.*\bWHERE\b"), "ALTER UPDATE"),
    (_rx(r"^ALTER\b.*\bRENAME\s+COLUMN\b"), "ALTER RENAME COLUMN"),
    (_rx(r"^ALTER\b.*\bMODIFY\s+COLUMN\b"), "ALTER MODIFY COLUMN"),
    (_rx(r"^ALTER\b.*\bMODIFY\s+(?:TTL|QUERY)\b"), "ALTER MODIFY TTL/QUERY"),
    (_rx(r"^ALTER\b.*\bREMOVE\s+TTL\b"), "ALTER REMOVE TTL"),
]  # fmt: skip


@dataclass(frozen=True)
class Problem:
    file: str
    statement: int
    line: int
    message: str

    def __str__(self) -> str:
        if not self.statement:  # about the whole file
            return f"{self.file}: {self.message}"
        return f"{self.file}: statement {self.statement} (line {self.line}): {self.message}"


def _check(code: str, contract: bool) -> list[str]:
    found: list[str] = []
    if _LITERAL_ON_CLUSTER.search(code):
        found.append("literal ON CLUSTER: write ${on_cluster} so single-node installs work too")
    if _ALTER_IF_EXISTS.match(code):
        found.append(
            "ALTER TABLE IF EXISTS is not valid ClickHouse SQL; guard the action instead "
            "(ADD COLUMN IF NOT EXISTS, DROP COLUMN IF EXISTS, ...)"
        )
    create = _CREATE.match(code)
    if create and not re.match(r"\s*IF\s+NOT\s+EXISTS\b", create["rest"], _F):
        found.append(f"CREATE {create['kind'].upper()} without IF NOT EXISTS is not re-runnable")
    drop = _DROP.match(code)
    if drop and not re.match(r"\s*IF\s+EXISTS\b", drop["rest"], _F):
        found.append(f"DROP {drop['kind'].upper()} without IF EXISTS is not re-runnable")
    if _ALTER.match(code) and not _ALTER_IF_EXISTS.match(code):
        for pattern, guard in _GUARDED_ACTIONS:
            for match in pattern.finditer(code):
                action = " ".join(match.group(0).upper().split())
                found.append(f"{action} without {guard} is not re-runnable")
    if _DDL.match(code) and "${on_cluster}" not in code:
        found.append("DDL without ${on_cluster} would change one node of a cluster only")
    for engine in _MERGE_TREE_ENGINE.finditer(code):
        if engine["engine"].lower().startswith("replicated"):
            found.append("literal Replicated engine: write ${replicated}" + engine["engine"][10:])
        elif not engine["prefix"]:
            found.append(
                f"ENGINE = {engine['engine']} without ${{replicated}} would not replicate on a cluster"
            )
    target = _TARGET.match(code)
    if target and not target["target"].startswith("${db}."):
        found.append(f"name tables as ${{db}}.<table>, not {target['target']}")
    if not contract:
        for pattern, label in _DESTRUCTIVE:
            if pattern.search(code):
                found.append(
                    f"destructive statement ({label}) in a file not marked `-- opentrace: contract`; "
                    "expand first, and contract in a later release"
                )
                break
    return found


def _reversibility(migration: Migration) -> str | None:
    if migration.irreversible is not None:
        if migration.has_down:
            return "both `-- down` and `-- irreversible:`; a migration is one or the other"
        if not migration.irreversible:
            return "`-- irreversible:` without a reason; say why it cannot be undone"
        return None
    if not migration.has_down:
        return (
            "neither a `-- down` part nor `-- irreversible: <reason>`: write the statements that "
            "undo this migration after a line `-- down`, or say why it cannot be undone"
        )
    if not migration.down:
        return "`-- down` is followed by no statement"
    return None


def lint_migration(migration: Migration) -> list[Problem]:
    problems: list[Problem] = []
    name = migration.path.name
    for index, statement in enumerate(migration.statements, start=1):
        for message in _check(statement.code, migration.contract):
            problems.append(Problem(name, index, statement.line, message))
    for index, statement in enumerate(migration.down, start=1):
        for message in _check(statement.code, contract=True):
            problems.append(Problem(name, index, statement.line, f"down: {message}"))
    reversibility = _reversibility(migration)
    if reversibility:
        problems.append(Problem(name, 0, 1, reversibility))
    return problems


def lint(migrations: list[Migration]) -> list[Problem]:
    return [problem for migration in migrations for problem in lint_migration(migration)]
