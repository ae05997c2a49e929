"""Migration files: names, numbering, checksums, encodings and templating."""

from __future__ import annotations

import hashlib
import re

import pytest

from opentrace.clickhouse.catalog import (
    DEFAULT_DIRECTORY,
    TemplateContext,
    checksum,
    load_migrations,
    render,
)
from opentrace.clickhouse.errors import MigrationFileError

SINGLE = TemplateContext(database="opentrace")
CLUSTER = TemplateContext(database="opentrace", cluster="analytics")


def test_it_loads_migrations_in_number_order(migrations):
    migrations.write("0002_second.sql", "SELECT 2;")
    migrations.write("0001_first.sql", "SELECT 1; SELECT 11;")
    loaded = load_migrations()
    assert [(m.number, m.name, len(m.statements)) for m in loaded] == [
        (1, "0001_first", 2),
        (2, "0002_second", 1),
    ]


def test_it_ignores_files_that_are_not_sql(migrations):
    migrations.write("0001_first.sql", "SELECT 1;")
    migrations.write("README.md", "notes")
    assert [m.name for m in load_migrations()] == ["0001_first"]


@pytest.mark.parametrize(
    "name",
    [
        "1_short.sql",
        "0001-dash.sql",
        "0001_Upper.sql",
        "0001_.sql",
        "00001_five.sql",
        "0001_sp ace.sql",
        "x.sql",
    ],
)
def test_it_rejects_a_badly_named_file(migrations, name):
    migrations.write(name, "SELECT 1;")
    with pytest.raises(MigrationFileError, match=re.escape("named NNNN_name.sql")):
        load_migrations()


def test_it_rejects_two_files_with_the_same_number(migrations):
    migrations.write("0001_first.sql", "SELECT 1;")
    migrations.write("0001_again.sql", "SELECT 1;")
    with pytest.raises(
        MigrationFileError, match=re.escape("0001_again.sql and 0001_first.sql share the number 0001")
    ):
        load_migrations()


def test_it_rejects_a_gap_in_the_numbers(migrations):
    migrations.write("0001_first.sql", "SELECT 1;")
    migrations.write("0003_third.sql", "SELECT 3;")
    with pytest.raises(MigrationFileError, match=re.escape("expected 0002, found 0003_third.sql")):
        load_migrations()


def test_numbers_start_at_one(migrations):
    migrations.write("0000_zero.sql", "SELECT 1;")
    with pytest.raises(MigrationFileError, match=re.escape("expected 0001, found 0000_zero.sql")):
        load_migrations()


def test_it_rejects_a_file_that_is_not_utf8(migrations):
    (migrations.path / "0001_latin.sql").write_bytes(b"SELECT '\xe9t\xe9';")
    with pytest.raises(MigrationFileError, match=re.escape("0001_latin.sql: not UTF-8")):
        load_migrations()


def test_it_rejects_a_file_without_statements(migrations):
    migrations.write("0001_empty.sql", "-- nothing here yet\n")
    with pytest.raises(MigrationFileError, match=re.escape("0001_empty.sql: contains no SQL statement")):
        load_migrations()


def test_it_names_the_file_with_an_unterminated_literal(migrations):
    migrations.write("0001_broken.sql", "SELECT 1;\nSELECT 'oops;\n")
    with pytest.raises(
        MigrationFileError, match=re.escape("0001_broken.sql: unterminated string literal starting on line 2")
    ):
        load_migrations()


def test_a_missing_folder_is_a_clear_error(settings, tmp_path):
    settings.CLICKHOUSE_MIGRATIONS_DIR = tmp_path / "nowhere"
    with pytest.raises(MigrationFileError, match=re.escape("does not exist")):
        load_migrations()


def test_the_checksum_is_the_same_with_crlf_and_lf_line_ends(migrations):
    lf = migrations.write("0001_first.sql", "SELECT 1;\nSELECT 2;\n")
    first = load_migrations()[0].checksum
    lf.write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    assert load_migrations()[0].checksum == first
    lf.write_bytes(b"SELECT 1;\nSELECT 3;\n")
    assert load_migrations()[0].checksum != first


def test_the_checksum_is_taken_before_templating():
    raw = b"CREATE TABLE ${db}.t${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x"
    assert checksum(raw) == hashlib.sha256(raw).hexdigest()


def test_it_renders_placeholders_for_a_single_node():
    sql = "CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x"  # noqa: E501
    assert (
        render(sql, SINGLE)
        == "CREATE TABLE IF NOT EXISTS opentrace.t (x UInt8) ENGINE = MergeTree() ORDER BY x"
    )


def test_it_renders_placeholders_for_a_cluster():
    sql = "CREATE TABLE IF NOT EXISTS ${db}.t${on_cluster} (x UInt8) ENGINE = ${replicated}MergeTree() ORDER BY x"  # noqa: E501
    assert render(sql, CLUSTER) == (
        "CREATE TABLE IF NOT EXISTS opentrace.t ON CLUSTER 'analytics' (x UInt8) "
        "ENGINE = ReplicatedMergeTree() ORDER BY x"
    )


def test_clickhouse_macros_survive_templating():
    sql = "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${db}/t', '{replica}')"
    assert (
        render(sql, CLUSTER)
        == "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/opentrace/t', '{replica}')"
    )


def test_a_doubled_dollar_is_a_literal_dollar():
    assert render("SELECT match(x, '^a$$')", SINGLE) == "SELECT match(x, '^a$')"


def test_a_database_name_that_is_not_a_plain_identifier_is_quoted():
    assert (
        render("SELECT * FROM ${db}.t", TemplateContext(database="open-trace"))
        == "SELECT * FROM `open-trace`.t"
    )


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM ${database}.t", r"unknown placeholder \$\{database\}"),
        ("SELECT * FROM $db.t", r"a `\$` that starts no placeholder \(placeholders are written \$\{name\}"),
        ("SELECT match(x, '^a$')", r"a `\$` that starts no placeholder"),
        ("SELECT ${ db }", r"a `\$` that starts no placeholder"),
    ],
)
def test_it_rejects_bad_placeholders(sql, message):
    with pytest.raises(MigrationFileError, match=message):
        render(sql, SINGLE)


def test_a_bad_placeholder_fails_when_the_file_is_loaded_naming_file_and_line(migrations):
    migrations.write("0001_first.sql", "SELECT 1;\n\nSELECT * FROM ${dbname}.t;\n")
    with pytest.raises(
        MigrationFileError, match=r"0001_first.sql: statement 2 \(line 3\): unknown placeholder"
    ):
        load_migrations()


def test_the_contract_marker_is_a_comment_line_of_its_own(migrations):
    migrations.write("0001_first.sql", "-- opentrace: contract\nSELECT 1;")
    migrations.write("0002_second.sql", "SELECT '-- opentrace: contract';")
    first, second = load_migrations()
    assert first.contract is True
    assert second.contract is False


def test_the_shipped_migrations_load():
    shipped = load_migrations(DEFAULT_DIRECTORY)
    assert [m.name for m in shipped][:2] == ["0001_events", "0002_system_logs"]


def test_a_down_part_is_left_out_of_the_checksum(migrations):
    forward = "CREATE DATABASE IF NOT EXISTS ${db}${on_cluster};\n"
    migrations.write("0001_base.sql", forward)
    before = load_migrations()[0]
    migrations.write("0001_base.sql", forward + "\n-- down\nDROP DATABASE IF EXISTS ${db}${on_cluster};\n")
    after = load_migrations()[0]
    assert after.checksum == before.checksum
    assert [s.text for s in after.statements] == [s.text for s in before.statements]
    assert [s.text for s in after.down] == ["DROP DATABASE IF EXISTS ${db}${on_cluster}"]
    migrations.write("0001_base.sql", forward.replace("DATABASE", "DATABASE  ") + "-- down\nSELECT 1;\n")
    assert load_migrations()[0].checksum != before.checksum


def test_the_shipped_migrations_keep_the_checksums_they_were_released_with():
    # Installs have these in their ledgers: adding the down parts must not make them `changed`.
    released = {
        "0001_events": "3541c891ef4224de12f156fe94da227e64aa734282184b7e4552e04e03e7f527",
        "0002_system_logs": "982f93ef552d4119b98ccd1b6589aed9fa5ad80e67c6e26dcb314d71d72a2242",
    }
    assert {m.name: m.checksum for m in load_migrations(DEFAULT_DIRECTORY)} == released
