"""An update in the `local` preset, end to end through `python -m host_agent once`, on real git."""

from __future__ import annotations

import json
import sqlite3
import sys

from testing.agent import UNHEALTHY_TIMEOUT, run_agent, trigger_fields, write_trigger
from testing.helpers import git

STEPS = ["preflight", "backup", "fetch", "build", "migrate", "deploy", "healthcheck"]


def steps_reported(backend, run_id: str) -> list[tuple[str, str]]:
    return [(e["step"], e["state"]) for e in backend.run_events(run_id) if e["kind"] == "step"]


def test_it_updates_and_reports_every_step_in_order(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert backend.seqs(run_id) == list(range(1, len(backend.seqs(run_id)) + 1))
    events = backend.run_events(run_id)
    assert (events[0]["kind"], events[0]["state"]) == ("run", "running")
    assert [s for s, state in steps_reported(backend, run_id) if state == "succeeded"] == STEPS
    assert project.head() == project.commits["1.2.0"]
    assert (project.checkout / "VERSION").read_text().strip() == "1.2.0"
    assert project.served() == "1.2.0"
    assert "migrate --noinput" in project.manage_log()
    assert not (project.updates / "trigger").exists()
    assert (project.state_dir / "done" / f"{run_id}.json").exists()
    backups = list((project.data_dir / "backups").iterdir())
    assert len(backups) == 1
    assert backups[0].name.endswith("-1.1.5")


def test_a_planted_git_hook_never_runs(project, backend):
    marker = project.data_dir / "hook-ran"
    hook = project.checkout / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(project.checkout, "config", "core.hooksPath", ".git/hooks")
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    assert run_agent(project, backend).returncode == 0
    assert backend.final_state(run_id) == "succeeded"
    assert not marker.exists()


def test_a_dirty_work_tree_fails_preflight_and_changes_nothing(project, backend):
    (project.checkout / "manage.py").write_text("# edited on the server\n")
    before = project.head()
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    failed = [e for e in backend.run_events(run_id) if e.get("state") == "failed" and e["kind"] == "step"]
    assert failed[0]["step"] == "preflight"
    assert "manage.py" in failed[0]["message"]
    assert project.head() == before
    assert project.manage_log() == []


def test_a_release_whose_minimum_is_above_the_running_version_fails_preflight_and_changes_nothing(
    project, backend
):
    # The backend refuses such an install; the agent checks again (SPEC §4.2), whoever wrote the trigger.
    manifest = json.dumps(
        {
            "schema": 1,
            "project": "opentrace",
            "releases": [{"version": "1.2.0", "min_upgrade_from": "1.1.9"}],
        }
    ).encode()
    run_id = write_trigger(project, trigger_fields("1.2.0", manifest=manifest))

    done = run_agent(project, backend)

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "failed"
    steps = steps_reported(backend, run_id)
    assert steps[:2] == [("preflight", "started"), ("preflight", "failed")]
    assert [state for _, state in steps[2:]] == ["skipped"] * (len(STEPS) - 1)
    failed = [e for e in backend.run_events(run_id) if e["kind"] == "step" and e["state"] == "failed"]
    assert "1.1.9" in failed[0]["message"]
    assert "1.1.5" in failed[0]["message"]
    assert project.head() == project.commits["1.1.5"]
    assert git(project.checkout, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert not (project.data_dir / "backups").exists() or not any((project.data_dir / "backups").iterdir())
    assert project.manage_log() == []
    assert project.served() == "1.1.5"


def test_a_tag_that_is_not_the_pinned_commit_fails_fetch_and_restores_the_checkout(project, backend):
    wrong = project.commits["1.1.5"]
    manifest = json.dumps(
        {"schema": 1, "project": "opentrace", "releases": [{"version": "1.2.0", "git_commit": wrong}]}
    ).encode()
    run_id = write_trigger(project, trigger_fields("1.2.0", manifest=manifest, git_commit=wrong))

    assert run_agent(project, backend).returncode == 1

    assert backend.final_state(run_id) == "failed"
    assert git(project.checkout, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert (project.checkout / "VERSION").read_text().strip() == "1.1.5"
    assert project.served() == "1.1.5"


def failed_step(backend, run_id: str) -> dict:
    return next(e for e in backend.run_events(run_id) if e["kind"] == "step" and e["state"] == "failed")


def test_a_tag_whose_version_file_says_another_version_fails_fetch_and_restores_the_checkout(
    project, backend
):
    (project.upstream / "VERSION").write_text("1.2.9\n")
    git(project.upstream, "commit", "-qam", "a mislabelled release")
    git(project.upstream, "tag", "v1.3.0")
    run_id = write_trigger(project, trigger_fields("1.3.0"))

    assert run_agent(project, backend).returncode == 1

    assert backend.final_state(run_id) == "failed"
    failed = failed_step(backend, run_id)
    assert failed["step"] == "fetch"
    assert "'1.2.9'" in failed["message"]
    assert "'1.3.0'" in failed["message"]
    assert git(project.checkout, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert project.head() == project.commits["1.1.5"]
    assert project.served() == "1.1.5"
    assert project.manage_log() == []


def test_a_release_whose_tag_is_not_on_the_remote_fails_preflight_and_changes_nothing(project, backend):
    run_id = write_trigger(project, trigger_fields("1.3.0"))  # offered, but never tagged upstream

    assert run_agent(project, backend).returncode == 1

    assert backend.final_state(run_id) == "failed"
    failed = failed_step(backend, run_id)
    assert failed["step"] == "preflight"
    assert "no tag v1.3.0" in failed["message"]
    assert project.head() == project.commits["1.1.5"]
    assert not (project.data_dir / "backups").exists() or not any((project.data_dir / "backups").iterdir())


def test_a_failed_build_ends_failed_before_downtime(project, backend):
    project.add_release("1.3.0", files={"requirements.txt": "./no-such-package.whl\n"})
    run_id = write_trigger(project, trigger_fields("1.3.0"))

    assert run_agent(project, backend).returncode == 1

    assert backend.final_state(run_id) == "failed"
    assert ("build", "failed") in steps_reported(backend, run_id)
    assert ("deploy", "skipped") in steps_reported(backend, run_id)
    assert project.served() == "1.1.5"
    assert (project.checkout / "VERSION").read_text().strip() == "1.1.5"


def test_a_failed_migration_rolls_back_and_reverts_it(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, FAKE_FAIL="migrate:1.2.0")

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    assert ("rollback", "succeeded") in steps_reported(backend, run_id)
    assert project.served() == "1.1.5"
    assert project.head() == project.commits["1.1.5"]
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "schema" not in tables  # the half-applied migration is gone
    assert project.db_rows() == [(1, "written before the update")]
    assert project.manage_log()[-1] == "migrate_all --revert-to -"
    seqs = backend.seqs(run_id)
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_failed_healthcheck_rolls_back_to_the_old_release(project, backend):
    backend.health_status = 503
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT=UNHEALTHY_TIMEOUT)

    # The old release is unhealthy too here, so rollback cannot prove itself: the run fails.
    assert done.returncode == 1
    assert backend.final_state(run_id) == "failed"
    assert ("rollback", "failed") in steps_reported(backend, run_id)
    assert project.served() == "1.1.5"
    assert project.head() == project.commits["1.1.5"]


def test_a_release_that_never_reports_its_version_is_rolled_back(project, backend):
    # The restart does nothing, so /healthz keeps reporting 1.1.5: healthcheck must not pass,
    # and the rollback's own health check (for 1.1.5) then succeeds.
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(project, backend, restart="true", OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT=UNHEALTHY_TIMEOUT)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    failed = [e for e in backend.run_events(run_id) if e["kind"] == "step" and e["state"] == "failed"]
    assert failed[0]["step"] == "healthcheck"
    assert "1.2.0" in failed[0]["message"]
    assert project.head() == project.commits["1.1.5"]


RESTART_WITH_OUTAGE = """
import os, subprocess, sys
data = os.environ["OPENTRACE_DATA_DIR"]
open(os.path.join(data, "backend-down"), "w").close()
# The app comes back three seconds later, serving the checkout's VERSION.
subprocess.Popen([sys.executable, "-c", (
    "import os, shutil, time; time.sleep(3); d = os.environ['OPENTRACE_DATA_DIR']; "
    "shutil.copy('VERSION', os.path.join(d, 'served')); os.remove(os.path.join(d, 'backend-down'))"
)], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


def test_events_from_while_the_backend_was_down_during_deploy_arrive_afterwards_in_order(
    project, backend, tmp_path
):
    script = tmp_path / "restart.py"
    script.write_text(RESTART_WITH_OUTAGE)
    run_id = write_trigger(project, trigger_fields("1.2.0"))

    done = run_agent(
        project, backend, restart=f"{sys.executable} {script}", OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="20"
    )

    assert done.returncode == 0, done.stderr
    assert backend.refused_while_down > 0, done.stderr
    assert "reports wait in the outbox" in done.stderr
    assert backend.final_state(run_id) == "succeeded"
    seqs = backend.seqs(run_id)
    assert seqs == list(range(1, len(seqs) + 1))
