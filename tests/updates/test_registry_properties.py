"""Whatever bytes or JSON the registry sends, the parser answers with a Document or RegistryError."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.offer import select_offer
from contract.registry import Document, RegistryError, parse_document
from tests.updates.registry_server import new_key

NOW = datetime(2026, 11, 27, tzinfo=UTC)
KEY = new_key("k1")
KEYS = {"k1": KEY.public_raw}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
release_like = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(
            st.text(max_size=12), st.sampled_from(["1.2.0", "v2.0", "1.1.5", "0.1"]), json_values
        ),
        "channel": st.one_of(st.sampled_from(["stable", "beta"]), json_values),
        "severity": st.one_of(st.sampled_from(["normal", "security", "critical"]), json_values),
        "git_tag": json_values,
        "git_commit": st.one_of(st.just("a" * 40), json_values),
        "min_upgrade_from": st.one_of(st.sampled_from(["1.0", "9.9"]), json_values),
        "published_at": st.one_of(st.just("2026-01-01T00:00:00Z"), json_values),
        "notes": json_values,
        "changelog": json_values,
    },
)
document_like = st.one_of(
    json_values,
    release_like,
    st.fixed_dictionaries(
        {
            "schema": st.one_of(st.just(1), json_values),
            "project": st.one_of(st.just("opentrace"), json_values),
        },
        optional={
            "meta_version": st.one_of(st.integers(), json_values),
            "expires": st.one_of(st.just("2099-01-01T00:00:00Z"), json_values),
            "releases": st.one_of(st.lists(release_like, max_size=4), json_values),
        },
    ),
    st.fixed_dictionaries({"opentrace": st.one_of(release_like, json_values)}),
    st.fixed_dictionaries(
        {"projects": st.one_of(st.dictionaries(st.text(max_size=10), release_like), json_values)}
    ),
)


def assert_parses_or_refuses(body: bytes, keys: dict[str, bytes], highest: int | None = None) -> None:
    try:
        document = parse_document(body, keys=keys, now=NOW, highest_meta_version=highest)
    except RegistryError as exc:
        refusal = exc
    else:
        refusal = None
    if refusal is not None:
        assert refusal.permanent is True
        assert str(refusal)
        return
    assert isinstance(document, Document)
    # A parsed document can always be asked for an offer.
    select_offer(document.releases, running="1.1.5", channel="stable", skipped=["1.2.0"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise_anything_else(body):
    assert_parses_or_refuses(body, {})
    assert_parses_or_refuses(body, KEYS)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(document_like, st.none() | st.integers(min_value=0, max_value=100))
def test_arbitrary_json_never_raises_anything_else(document, highest):
    body = json.dumps(document).encode()
    assert_parses_or_refuses(body, {}, highest)
    assert_parses_or_refuses(body, KEYS, highest)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(document_like, json_values)
def test_arbitrary_envelopes_never_raise_anything_else(inner, signatures):
    payload = json.dumps(inner).encode()
    for sigs in (signatures, [{"keyid": "k1", "sig": KEY.sign(payload)}]):
        body = json.dumps({"signed": base64.b64encode(payload).decode(), "signatures": sigs}).encode()
        assert_parses_or_refuses(body, {})
        assert_parses_or_refuses(body, KEYS)


def test_deep_nesting_is_refused_not_crashed():
    assert_parses_or_refuses(b"[" * 100000 + b"]" * 100000, {})


def test_huge_integers_and_nan_are_refused():
    assert_parses_or_refuses(b'{"schema": 1, "meta_version": ' + b"9" * 5000 + b"}", {})
    assert_parses_or_refuses(b'{"version": NaN}', {})


def test_duplicate_keys_are_refused():
    with pytest.raises(RegistryError, match="repeats the key"):
        parse_document(b'{"version": "1.2.0", "version": "9.9.9"}', keys={}, now=NOW)
