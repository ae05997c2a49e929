"""The error type of the ClickHouse migration runner.

Every failure the runner can name — a malformed migration file, a blocked ledger, a lock
held by another run, a statement ClickHouse refused — is a `MigrationError` whose message
is one clear line for the operator (the management commands print it as a `CommandError`).
"""

from __future__ import annotations


class MigrationError(Exception):
    """A migration command cannot go on."""


class MigrationFileError(MigrationError):
    """A file under `opentrace/clickhouse/migrations/` is malformed (name, encoding, SQL, template)."""


class MigrationBlocked(MigrationError):
    """The ledger is dirty, a checksum changed or an applied migration has no file."""


class StatementFailed(MigrationError):
    """ClickHouse refused a statement; the migration is recorded `failed` at that statement."""

    def __init__(self, message: str, *, name: str, statement: int) -> None:
        super().__init__(message)
        self.name = name
        self.statement = statement


class LedgerUnavailable(MigrationError):
    """ClickHouse refused a read or write of the ledger (unreachable, or a table not ours)."""


class LockUnavailable(MigrationError):
    """Another run holds the migration lock past `--lock-timeout`."""


class LockLost(MigrationError):
    """The migration lock was lost while statements were running (e.g. PostgreSQL went away)."""


class ClusterMissing(MigrationError):
    """CLICKHOUSE_CLUSTER names a cluster the server does not define."""


class Irreversible(MigrationError):
    """A revert would have to undo a migration that cannot be undone; nothing was changed."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name
