"""The migration files: finding, checking, checksumming and rendering them.

Files live in `opentrace/clickhouse/migrations/` as `NNNN_name.sql`, numbered from 0001
without gaps or repeats. A file's checksum is the SHA-256 of its bytes with CRLF turned into
LF, taken before templating, so it is the same on every install and every cluster.

Statements are templated with `string.Template` because its `${name}` syntax leaves
ClickHouse's own `{shard}`/`{replica}` macros alone: `${db}` is the database,
`${on_cluster}` is ` ON CLUSTER '<name>'` in cluster mode (else empty) and `${replicated}`
is the `Replicated` engine prefix in cluster mode (else empty). A literal `$` is written `$$`.

A line `-- down` ends the forward statements and starts the ones that undo them (run, in
file order, by `migrate_all --revert-to`); a file that cannot be undone says
`-- irreversible: <reason>` instead (SPEC §9). The checksum of a file with a `-- down` part
covers its forward part only — what `apply` ran — so a down part added to a released file
(as 0001 and 0002 got theirs) or corrected later does not make an applied migration
`changed`. A file without one is checksummed whole, as before down parts existed.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from opentrace.clickhouse import client as clickhouse
from opentrace.clickhouse.errors import MigrationFileError
from opentrace.clickhouse.sql import Statement, split_statements

DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^(?P<number>\d{4})_(?P<slug>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
CONTRACT_MARKER = re.compile(r"^[ \t]*--[ \t]*opentrace:[ \t]*contract[ \t]*$", re.MULTILINE)
DOWN_MARKER = re.compile(r"^[ \t]*--[ \t]*down[ \t]*$", re.MULTILINE)
IRREVERSIBLE_MARKER = re.compile(r"^[ \t]*--[ \t]*irreversible:(?P<reason>.*)$", re.MULTILINE)
PLACEHOLDERS = ("db", "on_cluster", "replicated")
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TemplateContext:
    database: str
    cluster: str | None = None

    @classmethod
    def from_settings(cls) -> TemplateContext:
        return cls(database=clickhouse.database(), cluster=settings.CLICKHOUSE_CLUSTER)

    def values(self) -> dict[str, str]:
        db = self.database
        if not _PLAIN_IDENTIFIER.match(db):
            db = "`" + db.replace("\\", "\\\\").replace("`", "\\`") + "`"
        if self.cluster is None:
            return {"db": db, "on_cluster": "", "replicated": ""}
        quoted = self.cluster.replace("\\", "\\\\").replace("'", "\\'")
        return {"db": db, "on_cluster": f" ON CLUSTER '{quoted}'", "replicated": "Replicated"}


class _Template(string.Template):
    # Only the braced form is a placeholder: `$db.t` is more likely a typo than intended.
    pattern = r"""
    \$(?:
      (?P<escaped>\$) |
      \{(?P<braced>[_a-z][_a-z0-9]*)\} |
      (?P<named>(?!)) |
      (?P<invalid>)
    )"""  # type: ignore[assignment]  # a str, as documented: the class compiles it (typeshed says Pattern)


def render(sql: str, context: TemplateContext) -> str:
    """`sql` with its placeholders filled in; an unknown or malformed placeholder is an error."""
    try:
        return _Template(sql).substitute(context.values())
    except KeyError as exc:
        raise MigrationFileError(
            f"unknown placeholder ${{{exc.args[0]}}} (known: "
            + ", ".join(f"${{{name}}}" for name in PLACEHOLDERS)
            + ")"
        ) from None
    except ValueError:
        raise MigrationFileError(
            "a `$` that starts no placeholder (placeholders are written ${name}; `$$` is a literal `$`)"
        ) from None


def checksum(raw: bytes) -> str:
    return hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest()


def forward_checksum(forward: str) -> str:
    """The checksum of a file's forward part: its text before `-- down`, as a file of its own."""
    return checksum((forward.rstrip() + "\n").encode("utf-8"))


@dataclass(frozen=True)
class Migration:
    number: int
    name: str  # the file name without `.sql`, e.g. `0001_events`; the ledger's key
    path: Path
    checksum: str
    statements: tuple[Statement, ...]
    contract: bool  # marked `-- opentrace: contract`: destructive statements are intended
    down: tuple[Statement, ...] = ()  # the statements after `-- down`, which undo `statements`
    has_down: bool = False  # the file has a `-- down` line (a down part may hold no statement)
    irreversible: str | None = None  # the reason given by `-- irreversible: <reason>`

    @property
    def reversible(self) -> bool:
        return self.has_down and bool(self.down) and self.irreversible is None

    def render_down(self, context: TemplateContext) -> list[str]:
        rendered = []
        for index, statement in enumerate(self.down):
            try:
                rendered.append(render(statement.text, context))
            except MigrationFileError as exc:
                raise MigrationFileError(
                    f"{self.path.name}: down statement {index + 1} (line {statement.line}): {exc}"
                ) from None
        return rendered

    def rendered(self, context: TemplateContext) -> list[str]:
        return [self.render_statement(index, context) for index in range(len(self.statements))]

    def render_statement(self, index: int, context: TemplateContext) -> str:
        statement = self.statements[index]
        try:
            return render(statement.text, context)
        except MigrationFileError as exc:
            raise MigrationFileError(
                f"{self.path.name}: statement {index + 1} (line {statement.line}): {exc}"
            ) from None


def directory() -> Path:
    return Path(getattr(settings, "CLICKHOUSE_MIGRATIONS_DIR", DEFAULT_DIRECTORY))


def read_migration(path: Path) -> Migration:
    match = FILE_NAME.match(path.name)
    if match is None:
        raise MigrationFileError(
            f"{path.name}: migration files are named NNNN_name.sql (four digits, lower-case words)"
        )
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise MigrationFileError(f"{path.name}: {size} bytes is too large for a migration file")
        raw = path.read_bytes()
    except OSError as exc:
        raise MigrationFileError(f"{path.name}: cannot read it ({exc.strerror})") from None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationFileError(f"{path.name}: not UTF-8 (byte {exc.start})") from None
    source = source.removeprefix("\ufeff").replace("\r\n", "\n")
    marker = DOWN_MARKER.search(source)
    forward, undo = (source, "") if marker is None else (source[: marker.start()], source[marker.end() :])
    if marker is not None and DOWN_MARKER.search(undo):
        raise MigrationFileError(f"{path.name}: more than one `-- down` line")
    irreversible = IRREVERSIBLE_MARKER.search(source)
    try:
        statements = split_statements(forward)
        # Padded with the lines before it, so a down statement's line is its line in the file.
        down = split_statements("\n" * forward.count("\n") + undo) if marker is not None else []
    except MigrationFileError as exc:
        raise MigrationFileError(f"{path.name}: {exc}") from None
    if not statements:
        raise MigrationFileError(f"{path.name}: contains no SQL statement")
    migration = Migration(
        number=int(match["number"]),
        name=path.name.removesuffix(".sql"),
        path=path,
        checksum=checksum(raw) if marker is None else forward_checksum(forward),
        statements=tuple(statements),
        contract=bool(CONTRACT_MARKER.search(source)),
        down=tuple(down),
        has_down=marker is not None,
        irreversible=" ".join(irreversible["reason"].split()) if irreversible else None,
    )
    # Render once with a cluster so a bad placeholder fails on load, not halfway through an apply.
    check = TemplateContext(database="opentrace", cluster="check")
    migration.rendered(check)
    migration.render_down(check)
    return migration


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """Every migration in `folder`, in order; raises `MigrationFileError` naming a bad file."""
    folder = directory() if folder is None else folder
    if not folder.is_dir():
        raise MigrationFileError(f"the migrations folder {folder} does not exist")
    migrations = [read_migration(path) for path in sorted(folder.glob("*.sql"))]
    by_number: dict[int, str] = {}
    for migration in migrations:
        if migration.number in by_number:
            raise MigrationFileError(
                f"{by_number[migration.number]}.sql and {migration.name}.sql share the number "
                f"{migration.number:04d}; renumber one of them"
            )
        by_number[migration.number] = migration.name
    for expected, migration in enumerate(migrations, start=1):
        if migration.number != expected:
            raise MigrationFileError(
                f"migration numbers must start at 0001 without gaps: expected {expected:04d}, "
                f"found {migration.name}.sql"
            )
    return migrations
