"""Whatever bytes or JSON the registry sends, the parser answers with a Document or a refusal
that names the rule it broke, and what it accepts obeys SPEC §4.2.

`parse_document` turns any exception of its own into a RegistryError ("the document could
not be read (…)") so that a bug cannot crash a check. That safety net would also make "never
raises anything else" true of any parser, so these properties require more: a refusal never
comes from the safety net, and an accepted document satisfies every rule.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.offer import select_offer
from contract.registry import SEVERITIES, Document, RegistryError, parse_document, parse_version
from testing.registry_server import new_key

NOW = datetime.now(UTC)
EXPIRES = (NOW + timedelta(days=30)).isoformat()
PUBLISHED = (NOW - timedelta(days=30)).isoformat()
KEY = new_key("k1")
KEYS = {"k1": KEY.public_raw}
IMPOSTOR = new_key("k1")  # the pinned keyid, another key
SAFETY_NET = "could not be read"

# NaN and Infinity (not JSON, refused before anything else) have tests of their own below.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
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
        "published_at": st.one_of(st.just(PUBLISHED), json_values),
        "notes": json_values,
        "changelog": json_values,
    },
)
# In a month, a minute ago, or anything else.
expires_like = st.one_of(st.just(EXPIRES), st.just((NOW - timedelta(minutes=1)).isoformat()), json_values)
# Mostly well-formed: a document a registry could send, with one field or another gone wrong.
plausible_release = st.fixed_dictionaries(
    {"version": st.sampled_from(["1.2.0", "v2.0", "1.1.5", "1.1.6rc1"])},
    optional={
        "channel": st.sampled_from(["stable", "beta", "Stable Channel", ""]),
        "severity": st.sampled_from(["normal", "security", "critical", "urgent", ""]),
        "git_tag": st.sampled_from(["v1.2.0", "release-1.2.0", "--upload-pack=x", "v1/../x", ""]),
        "git_commit": st.sampled_from(["a" * 40, "A" * 40, "abc", "g" * 40]),
        "min_upgrade_from": st.sampled_from(["1.0", "9.9", "x.y", ""]),
        "published_at": st.sampled_from([PUBLISHED, "yesterday"]),
        "notes": st.one_of(st.text(max_size=20), json_values),
    },
)
plausible_document = st.fixed_dictionaries(
    {"schema": st.just(1), "project": st.just("opentrace")},
    optional={
        "meta_version": st.integers(min_value=-1, max_value=120),
        "expires": expires_like,
        "releases": st.lists(plausible_release | release_like, max_size=4),
    },
)
document_like = st.one_of(
    json_values,
    release_like,
    plausible_release,
    plausible_document,
    st.fixed_dictionaries(
        {
            "schema": st.one_of(st.just(1), json_values),
            "project": st.one_of(st.just("opentrace"), json_values),
        },
        optional={
            "meta_version": st.one_of(st.integers(), json_values),
            "expires": expires_like,
            "releases": st.one_of(st.lists(release_like, max_size=4), json_values),
        },
    ),
    st.fixed_dictionaries({"opentrace": st.one_of(release_like, json_values)}),
    st.fixed_dictionaries(
        {"projects": st.one_of(st.dictionaries(st.text(max_size=10), release_like), json_values)}
    ),
)


def parse(body: bytes, keys: dict[str, bytes], highest: int | None = None) -> Document | RegistryError:
    """The parser's answer; a refusal must name a rule, not come from the safety net."""
    try:
        return parse_document(body, keys=keys, now=NOW, highest_meta_version=highest)
    except RegistryError as exc:
        refusal = exc
    assert refusal.permanent is True
    assert refusal.message
    assert str(refusal) == refusal.message
    assert SAFETY_NET not in refusal.message, f"the parser crashed: {refusal.message}"
    assert refusal.__cause__ is None, f"the parser crashed: {refusal.__cause__!r}"
    return refusal


def assert_obeys_the_rules(document: Document, keys: dict[str, bytes], highest: int | None) -> None:
    """SPEC §4.2, as far as the normalised document shows it."""
    if keys:
        assert (document.shape, document.verified) == ("signed", True)
        assert document.keyids
        assert set(document.keyids) <= set(keys)
    else:
        assert document.verified is False
    if document.expires is not None:
        assert document.expires > NOW
    if highest is not None and document.shape in ("full", "signed"):
        assert document.meta_version is not None
        assert document.meta_version >= highest
    for release in document.releases:
        assert parse_version(release.version) is not None
        assert release.severity in SEVERITIES
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,31}", release.channel)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,127}", release.git_tag)
        assert ".." not in release.git_tag
        assert release.git_commit is None or re.fullmatch(r"[0-9a-f]{40}", release.git_commit)
        assert release.min_upgrade_from is None or parse_version(release.min_upgrade_from) is not None
        assert isinstance(release.notes, str)
    offer = select_offer(document.releases, running="1.1.5", channel="stable", skipped=["1.2.0"])
    if offer.latest is not None:
        assert offer.latest.parsed_version > parse_version("1.1.5")
        assert offer.latest.channel == "stable"


def is_envelope(value: object) -> bool:
    return isinstance(value, dict) and ("signed" in value or "signatures" in value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_by_a_rule_or_read_by_the_rules(body):
    unsigned = parse(body, {})
    if isinstance(unsigned, Document):
        assert_obeys_the_rules(unsigned, {}, None)
    # Nobody can sign random bytes with our key.
    assert isinstance(parse(body, KEYS), RegistryError)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(document_like, st.none() | st.integers(min_value=0, max_value=100))
def test_arbitrary_json_is_refused_by_a_rule_or_read_by_the_rules(document, highest):
    body = json.dumps(document).encode()

    unsigned = parse(body, {}, highest)
    if isinstance(unsigned, Document):
        assert_obeys_the_rules(unsigned, {}, highest)
        if unsigned.shape == "full":
            assert (document["schema"], document["project"]) == (1, "opentrace")
            assert highest is None or document.get("meta_version", 0) >= highest

    pinned = parse(body, KEYS, highest)
    assert isinstance(pinned, RegistryError)
    if isinstance(document, dict) and not is_envelope(document):
        assert "not signed" in pinned.message


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(document_like, json_values, st.none() | st.integers(min_value=0, max_value=100))
def test_arbitrary_envelopes_are_verified_before_they_are_read(inner, signatures, highest):
    payload = json.dumps(inner).encode()
    as_plain = parse(payload, {}, highest)
    readable = isinstance(as_plain, Document) and as_plain.shape == "full"

    forged = json.dumps({"signed": base64.b64encode(payload).decode(), "signatures": signatures}).encode()
    assert isinstance(parse(forged, KEYS, highest), RegistryError)
    unverified = parse(forged, {}, highest)
    assert isinstance(unverified, Document) is readable
    if isinstance(unverified, Document):
        assert_obeys_the_rules(unverified, {}, highest)

    def envelope(*signatures: dict[str, str]) -> bytes:
        return json.dumps({"signed": base64.b64encode(payload).decode(), "signatures": signatures}).encode()

    good = {"keyid": "k1", "sig": KEY.sign(payload)}
    for refused, why in [
        (envelope({"keyid": "k1", "sig": IMPOSTOR.sign(payload)}), "does not verify"),
        (envelope({"keyid": "k1", "sig": KEY.sign(payload + b" ")}), "does not verify"),
        (envelope(good, good), "signs twice"),
        (envelope(good, {"keyid": "k9", "sig": IMPOSTOR.sign(payload)}), "not a pinned key"),
    ]:
        answer = parse(refused, KEYS, highest)
        assert isinstance(answer, RegistryError)
        assert why in answer.message

    verified = parse(envelope(good), KEYS, highest)
    # A good signature changes nothing about the rules the signed document must meet.
    assert isinstance(verified, Document) is readable
    if isinstance(verified, Document):
        assert_obeys_the_rules(verified, KEYS, highest)
        assert (verified.releases, verified.meta_version, verified.expires) == (
            as_plain.releases,
            as_plain.meta_version,
            as_plain.expires,
        )


def test_deep_nesting_is_refused_not_crashed():
    with pytest.raises(RegistryError, match="nested too deeply") as refused:
        parse_document(b"[" * 100000 + b"]" * 100000, keys={}, now=NOW)
    assert refused.value.__cause__ is None


def test_an_integer_too_long_to_read_is_refused():
    body = b'{"schema": 1, "project": "opentrace", "meta_version": ' + b"9" * 5000 + b"}"
    with pytest.raises(RegistryError, match=r"is not JSON \(Exceeds the limit"):
        parse_document(body, keys={}, now=NOW)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant):
    with pytest.raises(RegistryError, match=f"not JSON \\({constant} is not a JSON value\\)"):
        parse_document(b'{"version": "1.2.0", "severity": %s}' % constant.encode(), keys={}, now=NOW)


def test_duplicate_keys_are_refused():
    with pytest.raises(RegistryError, match="repeats the key"):
        parse_document(b'{"version": "1.2.0", "version": "9.9.9"}', keys={}, now=NOW)
