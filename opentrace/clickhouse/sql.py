"""Splitting a migration file into statements, client-side.

ClickHouse takes one statement per request, so a file is cut at each `;` that is code —
not one inside a string literal ('...'), a quoted identifier ("..." or `...`) or a comment
(`-- ...`, `# ...`, `#!...`, `/* ... */`, nested as ClickHouse nests them). Inside quotes a
backslash escapes the next character and a doubled quote stands for itself, as in
ClickHouse's own lexer.

Each `Statement` keeps the SQL to send (`text`: leading comments and the trailing `;`
removed) and a `code` form with every literal emptied and every comment removed, which the
linter matches keywords against without being fooled by a `'DROP TABLE'` inside a string.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentrace.clickhouse.errors import MigrationFileError

_QUOTES = {"'": "string literal", '"': "quoted identifier", "`": "quoted identifier"}


@dataclass(frozen=True)
class Statement:
    text: str  # the SQL sent to ClickHouse (before templating)
    code: str  # `text` with literals emptied and comments removed (for linting)
    line: int  # 1-based line of the statement's first character in the file


def _line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def _skip_quoted(source: str, start: int) -> int:
    """Index just past the closing quote of the quoted token starting at `start`."""
    quote = source[start]
    i = start + 1
    n = len(source)
    while i < n:
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if char == quote:
            if i + 1 < n and source[i + 1] == quote:  # a doubled quote stands for itself
                i += 2
                continue
            return i + 1
        i += 1
    raise MigrationFileError(f"unterminated {_QUOTES[quote]} starting on line {_line_of(source, start)}")


def _skip_block_comment(source: str, start: int) -> int:
    depth = 0
    i = start
    n = len(source)
    while i < n:
        if source.startswith("/*", i):
            depth += 1
            i += 2
        elif source.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise MigrationFileError(f"unterminated /* comment starting on line {_line_of(source, start)}")


def _skip_line_comment(source: str, start: int) -> int:
    end = source.find("\n", start)
    return len(source) if end == -1 else end


def _is_line_comment(source: str, i: int) -> bool:
    if source.startswith("--", i):
        return True
    # ClickHouse reads `# ` and `#!` as comments; a bare `#` is a syntax error it reports itself.
    return source[i] == "#" and (i + 1 == len(source) or source[i + 1] in " \t\r\n!")


def split_statements(source: str) -> list[Statement]:
    """The statements of `source`, in order; comment-only and empty pieces are dropped."""
    statements: list[Statement] = []
    text_start: int | None = None  # index of the current statement's first code character
    code: list[str] = []
    i = 0
    n = len(source)

    def finish(end: int) -> None:
        nonlocal text_start, code
        if text_start is not None:
            statements.append(
                Statement(
                    text=source[text_start:end].strip(),
                    code=" ".join("".join(code).split()),
                    line=_line_of(source, text_start),
                )
            )
        text_start = None
        code = []

    while i < n:
        char = source[i]
        if char in _QUOTES:
            end = _skip_quoted(source, i)
            if text_start is None:
                text_start = i
            # Keep identifiers (they matter to the linter); empty string literals' content.
            code.append(source[i:end] if char != "'" else "''")
            i = end
        elif source.startswith("/*", i):
            i = _skip_block_comment(source, i)
            code.append(" ")
        elif _is_line_comment(source, i):
            i = _skip_line_comment(source, i)
            code.append(" ")
        elif char == ";":
            finish(i)
            i += 1
        else:
            if text_start is None and not char.isspace():
                text_start = i
            code.append(char)
            i += 1
    finish(n)
    return statements
