"""A release's commit pin is checked in `preflight`, against the remote's peeled tag, before
any backup is taken (issue 19, point 18); the failure says how to get the pin right."""

from __future__ import annotations

import json

from testing.agent import run_agent, trigger_fields, write_trigger
from testing.helpers import git


def pinned(project, version: str, commit: str) -> str | None:  # type: ignore[no-untyped-def]
    manifest = json.dumps(
        {"schema": 1, "project": "opentrace", "releases": [{"version": version, "git_commit": commit}]}
    ).encode()
    return write_trigger(project, trigger_fields(version, manifest=manifest, git_commit=commit))


def failed_step(backend, run_id: str) -> dict:  # type: ignore[no-untyped-def]
    return next(e for e in backend.run_events(run_id) if e["kind"] == "step" and e.get("state") == "failed")


def test_an_annotated_tags_object_id_as_the_pin_fails_preflight_before_the_backup(project, backend):
    (project.upstream / "VERSION").write_text("1.3.0\n")
    git(project.upstream, "commit", "-qam", "release 1.3.0")
    git(project.upstream, "tag", "-a", "v1.3.0", "-m", "OpenTrace 1.3.0")
    tag_object = git(project.upstream, "rev-parse", "v1.3.0").strip()  # not the commit
    assert tag_object != git(project.upstream, "rev-parse", "v1.3.0^{commit}").strip()
    run_id = pinned(project, "1.3.0", tag_object)

    assert run_agent(project, backend).returncode == 1

    failure = failed_step(backend, run_id)
    assert failure["step"] == "preflight"
    assert "^{commit}" in failure["message"]
    assert not (project.data_dir / "backups").exists() or not any((project.data_dir / "backups").iterdir())
    assert project.served() == "1.1.5"


def test_the_peeled_commit_of_an_annotated_tag_is_accepted(project, backend):
    (project.upstream / "VERSION").write_text("1.3.0\n")
    git(project.upstream, "commit", "-qam", "release 1.3.0")
    git(project.upstream, "tag", "-a", "v1.3.0", "-m", "OpenTrace 1.3.0")
    commit = git(project.upstream, "rev-parse", "v1.3.0^{commit}").strip()
    run_id = pinned(project, "1.3.0", commit)

    assert run_agent(project, backend).returncode == 0
    assert backend.final_state(run_id) == "succeeded"
