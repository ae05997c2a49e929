"""Each rule the agent applies to a trigger's fields and manifest (SPEC §5), one at a time.

The file-level checks (links, FIFOs, size) and what happens to a rejected trigger (moved
aside, reported) go through `python -m host_agent once` in test_trigger.py; here each rule
meets the parser directly, so that a rule that stopped applying fails its own test.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from host_agent.errors import TriggerRejected
from host_agent.trigger import Trigger, parse_trigger
from testing.agent import SECRET, manifest_body, sign, trigger_fields

KEY_ID = "k1"


def parse(fields: dict, *, keys: dict[str, bytes] | None = None, running: str = "1.1.5") -> Trigger:
    return parse_trigger(
        json.dumps(fields).encode(), secret=SECRET, registry_keys=keys or {}, running_version=running
    )


def document(*releases: dict, **top: object) -> bytes:
    return json.dumps({"schema": 1, "project": "opentrace", "releases": list(releases), **top}).encode()


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def test_a_well_formed_trigger_is_accepted_with_what_the_manifest_says():
    manifest = document(
        {"version": "1.2.0", "git_commit": "a" * 40, "min_upgrade_from": "1.1.0"},
        expires=iso(timedelta(days=1)),
    )

    trigger = parse(trigger_fields("1.2.0", manifest=manifest, git_commit="a" * 40))

    assert (trigger.target_version, trigger.git_tag, trigger.git_commit) == ("1.2.0", "v1.2.0", "a" * 40)
    assert trigger.min_upgrade_from == "1.1.0"
    assert trigger.manifest == manifest


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param(trigger_fields(run_id="not-a-uuid"), "run_id is not a UUID", id="run-id"),
        pytest.param(
            trigger_fields("latest", manifest=manifest_body("1.2.0")), "is not a version", id="target"
        ),
        pytest.param(trigger_fields(git_tag="v9.9.9"), "differs from the manifest's", id="other-tag"),
        pytest.param(trigger_fields(git_tag="-x"), "not a plain tag name", id="option-tag"),
        pytest.param(trigger_fields(git_commit="ABC"), "40 lowercase hex", id="commit-shape"),
        pytest.param(
            trigger_fields(
                manifest=document({"version": "1.2.0", "git_commit": "a" * 40}), git_commit="b" * 40
            ),
            "git_commit differs from the commit the manifest pins",
            id="other-commit",
        ),
        pytest.param(
            trigger_fields(manifest=document({"version": "1.2.0", "git_commit": "a" * 40}), git_commit=None),
            "git_commit differs from the commit the manifest pins",
            id="pin-dropped",
        ),
        pytest.param(trigger_fields("1.1.5"), "is not newer than the running 1.1.5", id="same-version"),
        pytest.param(trigger_fields("1.1.4"), "is not newer than the running 1.1.5", id="downgrade"),
        pytest.param(trigger_fields(requested_by=""), "'requested_by' must be a non-empty string", id="by"),
        pytest.param(trigger_fields(requested_at=5), "'requested_at' must be a non-empty string", id="at"),
        pytest.param(
            trigger_fields(manifest=document({"version": "1.2.0"}, project="evil")),
            "manifest: the document is for project 'evil'",
            id="project",
        ),
        pytest.param(
            trigger_fields(manifest=document({"version": "1.2.0"}, expires=iso(-timedelta(minutes=1)))),
            "manifest: the document expired at",
            id="expired",
        ),
        pytest.param(
            trigger_fields(manifest=document({"version": "1.2.0"}, expires="soon")),
            "expires is not an ISO 8601 date-time",
            id="expires-shape",
        ),
        pytest.param(
            trigger_fields(manifest=document({"version": "1.2.1"})), "1.2.0 is not offered", id="not-offered"
        ),
    ],
)
def test_a_trigger_breaking_one_rule_is_rejected_naming_it(fields, reason):
    with pytest.raises(TriggerRejected, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(fields)


def test_a_manifest_that_is_not_base64_is_rejected():
    fields = {k: v for k, v in trigger_fields().items() if k != "signature"}
    fields["manifest"] = "not base64!"
    fields["signature"] = sign(fields)

    with pytest.raises(TriggerRejected, match="manifest is not valid base64"):
        parse(fields)


@pytest.mark.parametrize("signature", ["A" * 64, "a" * 63, "", 7])
def test_a_signature_that_is_not_lowercase_hex_hmac_is_rejected(signature):
    with pytest.raises(TriggerRejected, match="the signature is not a hex HMAC-SHA256"):
        parse({**trigger_fields(), "signature": signature})


class TestPinnedKeys:
    @pytest.fixture
    def keys(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.key = Ed25519PrivateKey.generate()
        return {KEY_ID: self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}

    def envelope(self, inner: bytes, *signatures: dict) -> bytes:
        sigs = list(signatures) or [{"keyid": KEY_ID, "sig": base64.b64encode(self.key.sign(inner)).decode()}]
        return json.dumps({"signed": base64.b64encode(inner).decode(), "signatures": sigs}).encode()

    def test_a_signed_manifest_is_accepted(self, keys):
        assert (
            parse(trigger_fields(manifest=self.envelope(manifest_body("1.2.0"))), keys=keys).git_tag
            == "v1.2.0"
        )

    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            (
                lambda t, inner: manifest_body("1.2.0"),
                "the document is not signed, but OPENTRACE_REGISTRY_KEYS requires a signature",
            ),
            (
                lambda t, inner: t.envelope(inner, *[json.loads(t.envelope(inner))["signatures"][0]] * 2),
                "signs twice",
            ),
            (
                lambda t, inner: t.envelope(inner, {"keyid": "k9", "sig": "AAAA"}),
                "keyid 'k9' is not a pinned key",
            ),
            (
                lambda t, inner: t.envelope(inner + b" ", *json.loads(t.envelope(inner))["signatures"]),
                "the signature by 'k1' does not verify",
            ),
            (
                lambda t, inner: t.envelope(json.dumps({"opentrace": {"version": "1.2.0"}}).encode()),
                "unsupported schema",
            ),
        ],
        ids=["unsigned", "same-key-twice", "unknown-key", "tampered", "not-a-full-document"],
    )
    def test_a_manifest_that_does_not_verify_is_rejected(self, keys, make, reason):
        manifest = make(self, manifest_body("1.2.0"))

        with pytest.raises(TriggerRejected, match=reason):
            parse(trigger_fields(manifest=manifest), keys=keys)
