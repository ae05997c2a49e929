"""`contract.signing`: both HMACs of SPEC §5 and §6, checked against the SPEC's own formula
(`testing.signer`, written from the SPEC independently of `contract/`)."""

from __future__ import annotations

import pytest

from contract import signing
from testing import signer as spec

SECRET = "s" * 48
NOW = 1_800_000_000.0


def test_the_trigger_signature_is_the_specs_and_ignores_the_signature_field():
    fields = {"run_id": "x", "requested_by": "zoë", "git_commit": None, "n": 1}
    expected = spec.trigger_signature(SECRET, fields)  # SPEC §5, literally
    assert signing.trigger_signature(SECRET, fields) == expected
    assert signing.trigger_signature(SECRET, {**fields, "signature": "anything"}) == expected
    assert signing.trigger_signature(SECRET, {**fields, "requested_by": "zoe"}) != expected


def test_canonical_json_is_sorted_compact_and_keeps_unicode():
    assert signing.canonical_json({"b": [1, None], "a": "é"}) == '{"a":"é","b":[1,null]}'.encode()


def test_a_request_signature_covers_the_timestamp_and_the_raw_body():
    body = b'{"run_id": "x"}'
    expected = spec.request_signature(SECRET, 1800000000, body)  # SPEC §6, literally
    assert signing.request_signature(SECRET, 1800000000, body) == expected
    headers = signing.request_headers(SECRET, 1800000000, body)
    assert headers["X-OpenTrace-Timestamp"] == "1800000000"
    assert headers["X-OpenTrace-Signature"] == expected


def verify(timestamp: str, signature: str, body: bytes = b"{}", now: float = NOW) -> int:
    return signing.verify_request(SECRET, timestamp=timestamp, signature=signature, body=body, now=now)


def test_a_signed_request_within_the_window_verifies():
    for skew in (-300, 0, 300):
        stamp = str(int(NOW) + skew)
        assert verify(stamp, signing.request_signature(SECRET, stamp, b"{}")) == int(stamp)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "why"),
    [
        ("", "", b"{}", "missing or malformed X-OpenTrace-Timestamp"),
        ("18e8", "", b"{}", "missing or malformed X-OpenTrace-Timestamp"),
        (f"{int(NOW)}\n", "", b"{}", "missing or malformed X-OpenTrace-Timestamp"),
        ("1" * 13, "", b"{}", "missing or malformed X-OpenTrace-Timestamp"),
        (str(int(NOW) - 301), "", b"{}", "outside the allowed window"),
        (str(int(NOW) + 301), "", b"{}", "outside the allowed window"),
        (str(int(NOW)), "", b"{}", "missing or malformed X-OpenTrace-Signature"),
        (str(int(NOW)), "sha256=" + "A" * 64, b"{}", "missing or malformed X-OpenTrace-Signature"),
        (str(int(NOW)), "0" * 64, b"{}", "missing or malformed X-OpenTrace-Signature"),
        (str(int(NOW)), "sha256=" + "0" * 64, b"{}", "bad signature"),
        (str(int(NOW)), "SIGNED-OTHER-BODY", b"{}", "bad signature"),
    ],
)
def test_what_does_not_hold_is_refused_with_the_reason(timestamp, signature, body, why):
    if signature == "SIGNED-OTHER-BODY":
        signature = signing.request_signature(SECRET, timestamp, b'{"other": 1}')
    with pytest.raises(signing.RequestRejected, match=why):
        verify(timestamp, signature, body)


def test_comparing_with_text_that_is_not_ascii_is_false_not_an_error():
    assert signing.equal("a" * 64, "é" * 64) is False
    assert signing.equal("a" * 64, "\ud800") is False
    assert signing.equal("a" * 64, "a" * 64) is True
