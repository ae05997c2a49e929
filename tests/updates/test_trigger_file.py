"""The trigger file (SPEC §5): content, signature, atomic write, and the agent's own reader accepts it."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from django.conf import settings

from testing.factories import make_run, request_run
from testing.signer import trigger_signature
from updates import trigger
from updates.models import UpdateRun

pytestmark = pytest.mark.django_db

SPEC_FIELDS = {
    "run_id",
    "target_version",
    "git_tag",
    "git_commit",
    "requested_by",
    "requested_at",
    "manifest",
    "signature",
}


@pytest.fixture
def written(offered, agent_online, superuser, django_capture_on_commit_callbacks):
    """A run requested from the registry's real answer, its trigger written after commit."""
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run(superuser)
    return run


def test_the_trigger_has_exactly_the_spec_fields(written):
    data = json.loads(trigger.trigger_path().read_bytes())
    assert set(data) == SPEC_FIELDS
    assert data["run_id"] == str(written.pk)
    assert (data["target_version"], data["git_tag"], data["git_commit"]) == ("1.2.0", "v1.2.0", "b" * 40)
    assert data["requested_by"] == "root_admin"
    assert data["requested_at"].endswith("Z")


def test_the_manifest_is_the_registry_body_as_fetched(written, offered):
    data = json.loads(trigger.trigger_path().read_bytes())
    assert base64.b64decode(data["manifest"]) == bytes(offered.document)


def test_the_signature_is_hmac_sha256_over_the_canonical_form(written):
    data = json.loads(trigger.trigger_path().read_bytes())
    assert data["signature"] == trigger_signature(settings.OPENTRACE_AGENT_SECRET, data)


def test_the_file_is_mode_0640_regular_single_link_and_small(written):
    info = os.lstat(trigger.trigger_path())
    assert stat.S_ISREG(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_nlink == 1
    assert info.st_size <= 512 * 1024


def test_no_temporary_files_are_left_behind(written):
    assert sorted(p.name for p in trigger.updates_dir().iterdir()) == ["issued", "trigger"]


def test_the_agents_own_reader_accepts_it(written):
    from host_agent.trigger import read_trigger

    accepted = read_trigger(
        trigger.trigger_path(),
        secret=settings.OPENTRACE_AGENT_SECRET,
        registry_keys=settings.OPENTRACE_REGISTRY_KEYS,
        running_version="1.1.5",
    )
    assert accepted.run_id == str(written.pk)
    assert accepted.target_version == "1.2.0"
    assert accepted.git_commit == "b" * 40


def test_the_agents_reader_rejects_it_under_another_secret(written):
    from host_agent.errors import TriggerRejected
    from host_agent.trigger import read_trigger

    with pytest.raises(TriggerRejected, match="bad signature"):
        read_trigger(trigger.trigger_path(), secret="x" * 48, registry_keys={}, running_version="1.1.5")


def test_non_ascii_usernames_sign_the_same_way_on_both_sides(
    offered, agent_online, django_user_model, django_capture_on_commit_callbacks
):
    from host_agent.trigger import read_trigger

    user = django_user_model.objects.create_superuser("zoë", "z@example.com", "pw-zoë-12345")
    with django_capture_on_commit_callbacks(execute=True):
        request_run(user)
    accepted = read_trigger(
        trigger.trigger_path(),
        secret=settings.OPENTRACE_AGENT_SECRET,
        registry_keys={},
        running_version="1.1.5",
    )
    assert accepted.requested_by == "zoë"


def test_a_symlink_planted_as_the_temp_name_is_not_followed(settings, tmp_path, monkeypatch):
    target = tmp_path / "victim"
    target.write_text("keep")
    directory = settings.OPENTRACE_UPDATES_DIR
    directory.mkdir(parents=True)
    monkeypatch.setattr(trigger.secrets, "token_hex", lambda n: "fixed")
    (directory / ".trigger.fixed.tmp").symlink_to(target)
    with pytest.raises(FileExistsError):
        trigger.write({"run_id": "x"})
    assert target.read_text() == "keep"


def test_an_oversize_trigger_is_refused():
    with pytest.raises(trigger.TriggerError):
        trigger.write({"manifest": "x" * (600 * 1024)})
    assert not trigger.trigger_path().exists()


def _agent_reads_back() -> object:
    from host_agent.trigger import read_trigger

    return read_trigger(
        trigger.trigger_path(),
        secret=settings.OPENTRACE_AGENT_SECRET,
        registry_keys={},
        running_version="1.1.5",
    )


def test_a_run_requested_without_a_user_names_the_system_and_the_agent_accepts_it(
    offered, agent_online, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run(None)
    assert run.requested_by is None
    assert run.requested_by_username == "system"  # not "(deleted user)" on the page
    assert json.loads(trigger.trigger_path().read_bytes())["requested_by"] == "system"
    accepted = _agent_reads_back()
    assert accepted.run_id == str(run.pk)
    assert accepted.requested_by == "system"


def test_a_stored_run_without_a_requester_name_still_gets_a_trigger_the_agent_accepts(offered):
    run = make_run(git_commit="b" * 40, manifest=bytes(offered.document))
    UpdateRun.objects.filter(pk=run.pk).update(requested_by_username="")  # a row from before the name
    run.refresh_from_db()
    trigger.write(trigger.build(run))
    assert _agent_reads_back().requested_by == "unknown"
