"""Every registry shape and rule of SPEC §4.1-4.2, served by a real HTTP server and checked end to end."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import pytest

from testing.registry_server import envelope, full_document, iso_in, new_key, respond
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState

pytestmark = pytest.mark.django_db


def check(server, body: bytes | dict) -> tuple[RegistryCheck, RegistryState]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    server.serve("/version.json", respond(raw))
    result = run_check(RegistryCheck.Trigger.COMMAND)
    return result, RegistryState.load()


def latest(state: RegistryState) -> str | None:
    offer = state.offer()
    return offer.latest.version if offer.latest else None


# --- shapes --------------------------------------------------------------------------
def test_it_reads_the_legacy_flat_shape(registry_server):
    result, state = check(registry_server, {"version": "1.1.6", "changelog": "Fixes."})
    assert result.outcome == "ok"
    offer = state.offer()
    assert offer.latest.version == "1.1.6"
    assert offer.latest.notes == "Fixes."
    assert offer.latest.git_tag == "v1.1.6"
    assert offer.latest.severity == "normal"
    assert state.verified is False


def test_it_reads_the_per_project_shape_and_ignores_other_projects(registry_server):
    _, state = check(
        registry_server, {"opentrace": {"version": "1.2.0", "changelog": "x"}, "other": {"version": "9.0"}}
    )
    assert latest(state) == "1.2.0"


def test_it_reads_the_projects_wrapper_shape(registry_server):
    _, state = check(
        registry_server, {"projects": {"other": {"version": "9.0"}, "opentrace": {"version": "v1.3.0"}}}
    )
    assert latest(state) == "1.3.0"


def test_a_per_project_document_without_opentrace_is_rejected(registry_server):
    result, _ = check(registry_server, {"projects": {"other": {"version": "9.0"}}})
    assert result.outcome == "failed"
    assert "no entry for project 'opentrace'" in result.error


def test_it_reads_the_full_shape_with_defaults(registry_server):
    result, state = check(registry_server, full_document({"version": "1.2.0"}, meta_version=42))
    assert result.outcome == "ok"
    assert result.meta_version == 42
    offer = state.offer()
    assert (offer.latest.channel, offer.latest.severity, offer.latest.git_tag) == (
        "stable",
        "normal",
        "v1.2.0",
    )
    assert offer.latest.git_commit is None
    assert offer.latest.min_upgrade_from is None
    assert state.highest_meta_version == 42


def test_the_raw_body_is_stored_exactly_as_fetched(registry_server):
    raw = b'{"version":   "1.1.6",\n "changelog": "spaces kept"}'
    result, state = check(registry_server, raw)
    assert bytes(result.body) == raw
    assert bytes(state.document) == raw


def test_a_document_of_no_known_shape_is_rejected_and_the_last_good_result_kept(registry_server):
    check(registry_server, {"version": "1.2.0"})
    result, state = check(registry_server, {"hello": "world"})
    assert result.outcome == "failed"
    assert "none of the registry shapes" in result.error
    assert latest(state) == "1.2.0"
    assert state.consecutive_failures == 1


# --- signatures ------------------------------------------------------------------------
def test_a_signed_document_verifies_with_the_pinned_key(registry_server, signing_key):
    inner = json.dumps(full_document({"version": "1.2.0", "severity": "security"})).encode()
    result, state = check(registry_server, envelope(inner, signing_key))
    assert result.outcome == "ok", result.error
    assert result.verified is True
    assert state.verified is True
    assert state.offer().latest.severity == "security"


def test_a_tampered_byte_fails_verification(registry_server, signing_key):
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    signature = signing_key.sign(inner)
    tampered = inner.replace(b"1.2.0", b"1.2.9")
    result, state = check(registry_server, envelope(tampered, signatures=[{"keyid": "k1", "sig": signature}]))
    assert result.outcome == "failed"
    assert "does not verify" in result.error
    assert state.last_success_at is None


def test_a_signature_by_another_key_under_the_pinned_keyid_fails(registry_server, signing_key):
    impostor = new_key("k1")
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    result, _ = check(registry_server, envelope(inner, impostor))
    assert result.outcome == "failed"
    assert "does not verify" in result.error


def test_an_unknown_keyid_is_rejected(registry_server, signing_key):
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    result, _ = check(registry_server, envelope(inner, signing_key, new_key("k9")))
    assert result.outcome == "failed"
    assert "'k9' is not a pinned key" in result.error


def test_a_duplicate_keyid_is_rejected(registry_server, signing_key):
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    sig = {"keyid": "k1", "sig": signing_key.sign(inner)}
    result, _ = check(registry_server, envelope(inner, signatures=[sig, sig]))
    assert result.outcome == "failed"
    assert "signs twice" in result.error


@pytest.mark.parametrize(
    "document",
    [
        {"version": "1.2.0", "changelog": "legacy"},
        {"opentrace": {"version": "1.2.0"}},
        full_document({"version": "1.2.0"}),
    ],
    ids=["legacy", "per-project", "full"],
)
def test_unsigned_documents_are_rejected_when_keys_are_pinned(registry_server, signing_key, document):
    result, state = check(registry_server, document)
    assert result.outcome == "failed"
    assert "not signed" in result.error
    assert state.offer().latest is None


def test_signatures_are_checked_before_the_signed_bytes_are_parsed(registry_server, signing_key):
    not_json = b"\xff\xfe this is not json"
    result, _ = check(registry_server, envelope(not_json, new_key("k1")))
    assert "does not verify" in result.error


def test_a_signed_document_without_pinned_keys_is_read_but_unverified(registry_server):
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    result, state = check(registry_server, envelope(inner, new_key("whoever")))
    assert result.outcome == "ok"
    assert state.verified is False
    assert latest(state) == "1.2.0"


# --- rules -------------------------------------------------------------------------------
def test_a_document_for_another_project_is_rejected(registry_server):
    result, _ = check(registry_server, full_document({"version": "1.2.0"}, project="evil"))
    assert result.outcome == "failed"
    assert "not 'opentrace'" in result.error


def test_an_expired_document_is_rejected(registry_server):
    result, state = check(
        registry_server, full_document({"version": "1.2.0"}, expires=iso_in(-timedelta(minutes=1)))
    )
    assert result.outcome == "failed"
    assert "expired" in result.error
    assert state.offer().latest is None


def test_a_lower_meta_version_is_a_rollback_and_rejected(registry_server):
    check(registry_server, full_document({"version": "1.3.0"}, meta_version=42))
    result, state = check(registry_server, full_document({"version": "1.2.0"}, meta_version=41))
    assert result.outcome == "failed"
    assert "rollback" in result.error
    assert latest(state) == "1.3.0"
    assert state.highest_meta_version == 42


def test_an_equal_meta_version_is_accepted(registry_server):
    check(registry_server, full_document({"version": "1.3.0"}, meta_version=42))
    result, _ = check(registry_server, full_document({"version": "1.3.0"}, meta_version=42))
    assert result.outcome == "ok"


@pytest.mark.parametrize(
    ("version", "offered"),
    [
        ("1.1.6", True),
        ("v1.2.0", True),
        ("1.1.5", False),
        ("1.1.5.0", False),
        ("1.1.4", False),
        ("1.1.5rc1", False),
    ],
)
def test_only_releases_above_the_running_version_are_offered(registry_server, version, offered):
    _, state = check(registry_server, full_document({"version": version}))
    assert (state.offer().latest is not None) is offered


def test_versions_compare_by_pep_440_not_as_strings(registry_server):
    _, state = check(registry_server, full_document({"version": "1.10.0"}, {"version": "1.9.0"}))
    assert latest(state) == "1.10.0"


def test_an_invalid_version_drops_that_release_not_the_document(registry_server):
    result, state = check(
        registry_server, full_document({"version": "not-a-version"}, {"version": "1.2.0"}, {"version": 12})
    )
    assert result.outcome == "ok"
    assert latest(state) == "1.2.0"
    assert any("invalid version" in w for w in result.warnings)
    assert len(state.releases) == 1


def test_min_upgrade_from_above_the_running_version_names_the_intermediate_release(registry_server):
    _, state = check(
        registry_server,
        full_document({"version": "1.2.0"}, {"version": "2.0.0", "min_upgrade_from": "1.2.0"}),
    )
    offer = state.offer()
    assert offer.latest.version == "2.0.0"
    assert offer.installable is False
    assert offer.intermediate.version == "1.2.0"


def test_min_upgrade_from_met_is_installable(registry_server):
    _, state = check(registry_server, full_document({"version": "2.0.0", "min_upgrade_from": "1.1.0"}))
    assert state.offer().installable is True


def test_only_releases_on_our_channel_or_stable_are_offered(registry_server, settings):
    document = full_document({"version": "1.2.0"}, {"version": "1.3.0b1", "channel": "beta"})
    _, state = check(registry_server, document)
    assert latest(state) == "1.2.0"
    settings.OPENTRACE_CHANNEL = "beta"
    assert latest(state) == "1.3.0b1"


def test_release_fields_are_kept(registry_server):
    commit = "a" * 40
    published = iso_in(-timedelta(days=7))
    _, state = check(
        registry_server,
        full_document(
            {
                "version": "1.2.0",
                "git_tag": "release-1.2.0",
                "git_commit": commit,
                "published_at": published,
                "notes": "n",
                "severity": "critical",
            }
        ),
    )
    release = state.offer().latest
    assert (release.git_tag, release.git_commit, release.severity, release.notes) == (
        "release-1.2.0",
        commit,
        "critical",
        "n",
    )
    assert release.published_at == datetime.fromisoformat(published)


@pytest.mark.parametrize(
    "field",
    [
        {"git_tag": "--upload-pack=evil"},
        {"git_tag": "v1/../../x"},
        {"git_commit": "abc"},
        {"severity": "meh"},
        {"channel": "Stable Channel"},
        {"min_upgrade_from": "x.y"},
    ],
)
def test_a_release_with_a_hostile_field_is_dropped(registry_server, field):
    result, state = check(registry_server, full_document({"version": "1.2.0", **field}, {"version": "1.1.9"}))
    assert result.outcome == "ok"
    assert latest(state) == "1.1.9"


def test_a_signed_envelope_is_base64_of_the_exact_bytes(registry_server, signing_key):
    inner = b'{"schema":1,"project":"opentrace","meta_version":3,"releases":[{"version":"1.2.0"}]}'
    body = envelope(inner, signing_key)
    assert base64.b64decode(json.loads(body)["signed"]) == inner
    result, _ = check(registry_server, body)
    assert result.outcome == "ok"
