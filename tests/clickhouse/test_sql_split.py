"""The client-side statement splitter: `;` ends a statement only where it is code."""

from __future__ import annotations

import pytest

from opentrace.clickhouse.errors import MigrationFileError
from opentrace.clickhouse.sql import split_statements


def texts(source: str) -> list[str]:
    return [statement.text for statement in split_statements(source)]


def test_it_splits_on_semicolons():
    assert texts("SELECT 1; SELECT 2;\nSELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"]


def test_it_keeps_semicolons_inside_string_literals():
    assert texts("INSERT INTO t VALUES ('a;b'); SELECT ';'") == ["INSERT INTO t VALUES ('a;b')", "SELECT ';'"]


def test_it_understands_backslash_and_doubled_quotes_in_literals():
    source = r"SELECT 'it\'s; fine', 'it''s; fine too'; SELECT 2"
    assert texts(source) == [r"SELECT 'it\'s; fine', 'it''s; fine too'", "SELECT 2"]


def test_it_keeps_semicolons_inside_quoted_identifiers():
    assert texts('SELECT 1 AS `a;b`, 2 AS "c;d"; SELECT 3') == ['SELECT 1 AS `a;b`, 2 AS "c;d"', "SELECT 3"]


def test_it_ignores_semicolons_in_comments():
    source = """
    -- first; still a comment
    SELECT 1; # a hash comment; too
    /* block; /* nested; */ still comment; */ SELECT 2;
    #!shebang-style; comment
    """
    assert texts(source) == ["SELECT 1", "SELECT 2"]


def test_it_drops_pieces_that_are_only_comments_or_blank():
    assert texts("SELECT 1;;\n  ;-- trailing note; with semicolon\n/* end */") == ["SELECT 1"]


def test_it_strips_leading_comments_but_keeps_inner_ones():
    [statement] = split_statements("-- about this\nSELECT 1 -- inner note\n  + 2;")
    assert statement.text == "SELECT 1 -- inner note\n  + 2"
    assert statement.line == 2


def test_it_reports_the_line_each_statement_starts_on():
    lines = [statement.line for statement in split_statements("SELECT 1;\n\n-- c\nSELECT\n2;\nSELECT 3;")]
    assert lines == [1, 4, 6]


def test_the_code_form_blanks_literals_and_drops_comments():
    [statement] = split_statements("ALTER TABLE t COMMENT COLUMN c 'DROP TABLE x' -- DROP TABLE y\n")
    assert statement.code == "ALTER TABLE t COMMENT COLUMN c ''"


def test_it_leaves_template_placeholders_and_macros_alone():
    [statement] = split_statements("CREATE TABLE ${db}.t${on_cluster} ENGINE = X('/p/{shard}', '{replica}');")
    assert statement.text == "CREATE TABLE ${db}.t${on_cluster} ENGINE = X('/p/{shard}', '{replica}')"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("SELECT 'unterminated;\nSELECT 2;", "unterminated string literal starting on line 1"),
        ("SELECT 1;\nSELECT `open;", "unterminated quoted identifier starting on line 2"),
        ('SELECT "open', "unterminated quoted identifier starting on line 1"),
        ("SELECT 1;\n\n/* never closed; SELECT 2;", "unterminated /* comment starting on line 3"),
        ("SELECT 1 /* /* nested */ not closed", "unterminated /* comment starting on line 1"),
        ("SELECT 'ends with a backslash\\", "unterminated string literal"),
    ],
)
def test_it_rejects_unterminated_tokens_naming_the_line(source, message):
    with pytest.raises(MigrationFileError, match=message.replace("/*", r"/\*")):
        split_statements(source)


def test_it_returns_nothing_for_an_empty_source():
    assert split_statements("") == []
    assert split_statements("  \n-- only a comment\n") == []
