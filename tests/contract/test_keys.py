"""`contract.keys`: the `keyid:base64,...` parser both configuration loaders call."""

from __future__ import annotations

import base64

import pytest

from contract.keys import KeysError, parse_registry_keys

K32 = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize("value", [None, "", " ", ",", " , ,"])
def test_nothing_set_means_no_pinned_keys(value):
    assert parse_registry_keys(value) == {}


def test_it_reads_keyid_and_the_32_raw_bytes():
    assert parse_registry_keys(f"k1:{K32},release-2026.a_b:{K32}") == {
        "k1": bytes(32),
        "release-2026.a_b": bytes(32),
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("k1", "expected keyid:base64 pairs, got 'k1'"),
        (f":{K32}", "expected keyid:base64"),
        (f"{'k' * 65}:{K32}", "expected keyid:base64"),
        (f"k/1:{K32}", "expected keyid:base64"),
        ("k1:AAAA=AAA", "key 'k1' is not valid base64"),
        ("k1:" + base64.b64encode(bytes(33)).decode(), "key 'k1' is not a 32-byte Ed25519 public key"),
        (f"k1:{K32}, k1:{K32}", "key id 'k1' appears twice"),
    ],
)
def test_a_malformed_value_says_which_item_and_why(value, problem):
    with pytest.raises(KeysError, match="^" + problem.replace("(", r"\(")):
        parse_registry_keys(value)
