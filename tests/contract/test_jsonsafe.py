"""`contract.jsonsafe`: plain, unambiguous JSON or one error type, whatever the bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.jsonsafe import JSONRejected, loads


def test_it_reads_plain_json():
    assert loads(b'{"a": [1, 2.5, "\\u00e9", true, null], "b": {}}') == {
        "a": [1, 2.5, "é", True, None],
        "b": {},
    }


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"version": "1.2.0", "version": "9.9.9"}', "it repeats the key 'version'"),
        (b'{"a": {"k": 1, "k": 1}}', "it repeats the key 'k'"),
        (b'{"meta_version": NaN}', "NaN is not a JSON value"),
        (b"[Infinity]", "Infinity is not a JSON value"),
        (b"[-Infinity]", "-Infinity is not a JSON value"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"a": ' * 50000 + b"1" + b"}" * 50000, "nested too deeply"),
        (b'{"notes": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'[[["ok", "\\ud83d"]]]', "lone surrogate"),
        (b'{"changelog": "\xe9"}', "not UTF-8 text"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"<html>", "Expecting value"),
        (b"", "Expecting value"),
        (b"[1] [2]", "Extra data"),
        (b"[" + b"9" * 5000 + b"]", "digits"),
    ],
)
def test_it_refuses_what_two_parsers_could_read_differently_or_that_breaks_later(data, why):
    with pytest.raises(JSONRejected) as refused:
        loads(data, "the manifest")
    assert str(refused.value).startswith("the manifest is not JSON (")
    assert why in str(refused.value)


def test_a_surrogate_pair_is_one_character_not_a_lone_surrogate():
    assert loads(b'["\\ud83d\\ude00"]') == ["\U0001f600"]


@given(st.binary(max_size=200))
def test_any_bytes_are_json_or_refused(data):
    # Nothing but JSONRejected may escape: no RecursionError, UnicodeError or anything else.
    with contextlib.suppress(JSONRejected):
        loads(data)
