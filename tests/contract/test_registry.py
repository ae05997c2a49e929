"""`contract.registry`: the four shapes, the rules of SPEC §4.2 and every field of §4.1."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from contract.offer import select_offer
from contract.registry import Document, RegistryError, Release, parse_document, parse_time, parse_version
from testing.registry_server import envelope, new_key

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)  # noqa: UP017 - as the 3.10 code spells it
K1, K2 = new_key("k1"), new_key("k2")
PINNED = {"k1": K1.public_raw, "k2": K2.public_raw}


def full(*releases: dict, **top: object) -> dict:
    return {
        "schema": 1,
        "project": "opentrace",
        "meta_version": 5,
        "expires": (NOW + timedelta(days=1)).isoformat(),
        "releases": list(releases),
        **top,
    }


def parse(
    value: object, keys: dict[str, bytes] | None = None, highest_meta_version: int | None = None
) -> Document:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_document(body, keys=keys or {}, now=NOW, highest_meta_version=highest_meta_version)


def refused(
    value: object, keys: dict[str, bytes] | None = None, highest_meta_version: int | None = None
) -> str:
    with pytest.raises(RegistryError) as caught:
        parse(value, keys, highest_meta_version)
    assert caught.value.permanent is True
    return str(caught.value)


# --- shapes and fields -----------------------------------------------------------------
def test_every_release_field_gets_the_specs_default():
    (release,) = parse(full({"version": "1.2.0"})).releases
    assert release == Release(
        version="1.2.0",
        channel="stable",
        published_at=None,
        notes="",
        severity="normal",
        git_tag="v1.2.0",
        git_commit=None,
        min_upgrade_from=None,
        downtime=False,
        withdrawn=False,
        rollout=100,
    )


def test_every_release_field_is_read():
    entry = {
        "version": "v2.0.0",
        "channel": "beta",
        "published_at": "2026-11-20T00:00:00+01:00",
        "notes": "**n**",
        "severity": "critical",
        "git_tag": "release/2.0.0",
        "git_commit": "A" * 40,
        "min_upgrade_from": "v1.2.0",
        "downtime": True,
        "withdrawn": True,
        "rollout": 25,
    }
    (release,) = parse(full(entry)).releases
    assert release.version == "2.0.0"
    assert release.published_at == datetime(2026, 11, 19, 23, 0, tzinfo=timezone.utc)  # noqa: UP017
    assert (release.channel, release.notes, release.severity, release.git_tag) == (
        "beta",
        "**n**",
        "critical",
        "release/2.0.0",
    )
    assert (release.git_commit, release.min_upgrade_from) == ("a" * 40, "1.2.0")
    assert (release.downtime, release.withdrawn, release.rollout) == (True, True, 25)


@pytest.mark.parametrize(
    ("document", "shape"),
    [
        ({"version": "1.2.0", "changelog": "Fixes."}, "legacy"),
        ({"opentrace": {"version": "1.2.0"}, "other": {"version": "9"}}, "per_project"),
        ({"projects": {"opentrace": {"version": "1.2.0"}, "other": 5}}, "per_project"),
        (full({"version": "1.2.0"}), "full"),
    ],
)
def test_the_unsigned_shapes_normalise_to_releases(document, shape):
    parsed = parse(document)
    assert parsed.shape == shape
    assert [r.version for r in parsed.releases] == ["1.2.0"]
    assert parsed.verified is False


def test_the_legacy_changelog_is_the_notes():
    assert parse({"version": "1.2.0", "changelog": "Fixes."}).releases[0].notes == "Fixes."


@pytest.mark.parametrize(
    "field",
    [
        {"downtime": "yes"},
        {"withdrawn": 1},
        {"rollout": 101},
        {"rollout": -1},
        {"rollout": 50.5},
        {"rollout": True},
        {"channel": "Stable Channel"},
        {"severity": ["critical"]},
        {"git_tag": "--upload-pack=evil"},
        {"git_commit": "abc"},
        {"min_upgrade_from": 1},
        {"published_at": "yesterday"},
        {"notes": "x" * (64 * 1024 + 1)},
    ],
)
def test_a_release_with_an_invalid_field_is_dropped_with_a_warning_not_the_document(field):
    parsed = parse(full({"version": "1.2.0", **field}, {"version": "1.1.9"}))
    assert [r.version for r in parsed.releases] == ["1.1.9"]
    assert any("invalid" in warning for warning in parsed.warnings)


@pytest.mark.parametrize("version", ["1.2.0.post1", "1.2.0rc1", "1.2.0.dev3", "1.2.0+local.7", "v1.2", "V2"])
def test_versions_are_pep_440_with_a_leading_v_allowed(version):
    assert parse(full({"version": version})).releases[0].parsed_version == parse_version(version)


@pytest.mark.parametrize("version", ["not-a-version", "", "1.2.0 beta", "x" * 65, 12, None])
def test_an_invalid_version_drops_that_release(version):
    parsed = parse(full({"version": version}, {"version": "1.2.0"}))
    assert [r.version for r in parsed.releases] == ["1.2.0"]
    assert "invalid version" in parsed.warnings[0]


def test_a_release_is_found_by_pep_440_equality():
    document = parse(full({"version": "1.2"}))
    assert document.release("v1.2.0") is document.releases[0]
    assert document.release("1.2.1") is None
    assert document.release("junk") is None


def test_stored_releases_round_trip_and_old_rows_get_the_new_fields_defaults():
    (release,) = parse(
        full({"version": "1.2.0", "published_at": "2026-11-20T00:00:00Z", "rollout": 5})
    ).releases
    assert Release.from_json(json.loads(json.dumps(release.to_json()))) == release
    old_row = {"version": "1.2.0", "git_tag": "v1.2.0", "notes": "", "severity": "normal"}
    assert Release.from_json(old_row).rollout == 100
    assert Release.from_json(old_row).withdrawn is False


# --- the rules of §4.2 -----------------------------------------------------------------
def test_a_full_document_needs_schema_1():
    no_schema = {k: v for k, v in full({"version": "1.2.0"}).items() if k != "schema"}
    assert "unsupported schema" in refused(no_schema)
    assert "unsupported schema" in refused(full({"version": "1.2.0"}, schema=True))
    assert "unsupported schema" in refused(full({"version": "1.2.0"}, schema=2))


def test_another_project_is_refused():
    assert "not 'opentrace'" in refused(full({"version": "1.2.0"}, project="other"))


def test_an_expired_document_is_refused_at_its_expiry_already():
    assert "expired" in refused(full({"version": "1.2.0"}, expires=NOW.isoformat()))
    assert parse(full(expires=(NOW + timedelta(seconds=1)).isoformat())).expires == NOW + timedelta(seconds=1)


def test_a_lower_meta_version_than_accepted_before_is_refused_an_equal_one_is_not():
    assert "rollback" in refused(full(meta_version=4), highest_meta_version=5)
    assert parse(full(meta_version=5), highest_meta_version=5).meta_version == 5


@pytest.mark.parametrize("meta_version", [-1, 2**63, "5", 5.0, True, None])
def test_meta_version_is_a_non_negative_whole_number(meta_version):
    assert "meta_version" in refused(full(meta_version=meta_version))


def test_a_document_over_256_kib_is_refused():
    body = json.dumps(full({"version": "1.2.0"})).encode()
    assert "larger than 256 KiB" in refused(body[:-1] + b" " * (256 * 1024) + b"}")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>", "is not JSON"),
        (b'{"version": "1.2.0"', "is not JSON"),
        (b'{"version": "1.2.0", "version": "9.9.9"}', "repeats the key"),
        (b'{"version": "1.2.0", "notes": "\\ud800"}', "lone surrogate"),
        (b"[" * 50000, "nested too deeply"),
        (b'{"version": "\xe9"}', "not UTF-8"),
        (b"[1]", "not a JSON object"),
        (b'{"hello": "world"}', "none of the registry shapes"),
        (b'{"projects": {"other": {}}}', "no entry for project 'opentrace'"),
        (b'{"opentrace": "1.2.0"}', "is not an object"),
        (b'{"schema": 1, "project": "opentrace", "releases": {}}', "releases is not a list"),
    ],
)
def test_what_is_not_a_registry_document_is_refused_with_the_reason(body, why):
    assert why in refused(body)


# --- signatures ------------------------------------------------------------------------
def inner(meta_version: int = 5) -> bytes:
    return json.dumps(full({"version": "1.2.0"}, meta_version=meta_version)).encode()


def test_a_document_signed_by_every_pinned_key_it_names_verifies():
    parsed = parse(envelope(inner(), K1, K2), PINNED)
    assert (parsed.shape, parsed.verified, parsed.keyids) == ("signed", True, ("k1", "k2"))
    assert parse(envelope(inner(), K1), PINNED).keyids == ("k1",)


def test_one_bad_signature_refuses_the_document_even_beside_a_good_one():
    body = envelope(
        inner(),
        signatures=[{"keyid": "k1", "sig": K1.sign(inner())}, {"keyid": "k2", "sig": K1.sign(inner())}],
    )
    assert "the signature by 'k2' does not verify" in refused(body, PINNED)
    reversed_order = envelope(
        inner(),
        signatures=[{"keyid": "k2", "sig": K1.sign(inner())}, {"keyid": "k1", "sig": K1.sign(inner())}],
    )
    assert "does not verify" in refused(reversed_order, PINNED)


def test_an_unknown_or_repeated_keyid_is_refused():
    assert "'k9' is not a pinned key" in refused(envelope(inner(), K1, new_key("k9")), PINNED)
    signature = {"keyid": "k1", "sig": K1.sign(inner())}
    assert "signs twice" in refused(envelope(inner(), signatures=[signature, signature]), PINNED)


@pytest.mark.parametrize(
    "signatures",
    [[], [{"keyid": "k1"}], [{"keyid": "k 1", "sig": "AA=="}], [{"keyid": "k1", "sig": "AA=="}], "k1"],
)
def test_malformed_signatures_are_refused(signatures):
    refused(envelope(inner(), signatures=signatures), PINNED)


def test_the_signature_is_checked_before_the_signed_bytes_are_parsed():
    not_json = b"\xff not json"
    assert "does not verify" in refused(envelope(not_json, new_key("k1")), PINNED)
    assert "is not JSON" in refused(envelope(not_json, K1), PINNED)


def test_with_pinned_keys_only_a_signed_envelope_is_accepted():
    for unsigned in ({"version": "1.2.0"}, {"opentrace": {"version": "1.2.0"}}, full({"version": "1.2.0"})):
        assert "not signed" in refused(unsigned, PINNED)


def test_an_envelope_with_extra_fields_is_refused():
    document = json.loads(envelope(inner(), K1))
    document["note"] = "hi"
    assert "exactly the fields" in refused(document, PINNED)


def test_without_pinned_keys_an_envelope_is_read_but_not_verified():
    parsed = parse(envelope(inner(), new_key("whoever")))
    assert (parsed.shape, parsed.verified) == ("signed", False)
    assert "not valid base64" in refused({"signed": "!!", "signatures": []})


def test_the_signed_bytes_are_the_exact_bytes_signed():
    exact = b'{"schema":1,"project":"opentrace","meta_version":3,"releases":[{"version":"1.2.0"}]}'
    body = envelope(exact, K1)
    assert base64.b64decode(json.loads(body)["signed"]) == exact
    assert parse(body, PINNED).meta_version == 3


# --- dates, read the same on Python 3.10 and 3.11 --------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T00:00:00Z", datetime(2026, 11, 20, tzinfo=timezone.utc)),  # noqa: UP017
        ("2026-11-20T00:00:00z", datetime(2026, 11, 20, tzinfo=timezone.utc)),  # noqa: UP017
        ("2026-11-20T01:30:00+01:30", datetime(2026, 11, 20, tzinfo=timezone.utc)),  # noqa: UP017
        ("2026-11-19T19:00:00-0500", datetime(2026, 11, 20, tzinfo=timezone.utc)),  # noqa: UP017
        ("2026-11-20 00:00", datetime(2026, 11, 20, tzinfo=timezone.utc)),  # noqa: UP017
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=timezone.utc)),  # noqa: UP017
        ("2026-11-20T00:00:00.1234567Z", datetime(2026, 11, 20, 0, 0, 0, 123456, tzinfo=timezone.utc)),  # noqa: UP017
    ],
)
def test_iso_8601_date_times_are_read_as_utc(text, expected):
    assert parse_time(text, "expires") == expected


@pytest.mark.parametrize(
    "text", ["2026-13-01", "2026-11-20T25:00:00Z", "20261120T000000Z", "soon", "", 5, None]
)
def test_what_is_not_a_date_time_is_refused(text):
    with pytest.raises(RegistryError, match="expires"):
        parse_time(text, "expires")


# --- the offer --------------------------------------------------------------------------
def test_the_offer_is_the_newest_release_above_the_running_one_by_pep_440():
    releases = parse(full({"version": "1.10.0"}, {"version": "1.9.0"}, {"version": "1.2.0.post1"})).releases
    assert select_offer(releases, running="1.1.5", channel="stable").latest.version == "1.10.0"
    assert select_offer(releases, running="1.10.0", channel="stable").latest is None
    only_post = parse(full({"version": "1.2.0.post1"})).releases
    assert select_offer(only_post, running="1.2.0", channel="stable").latest.version == "1.2.0.post1"
