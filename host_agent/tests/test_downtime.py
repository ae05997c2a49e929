"""A release whose registry entry declares downtime, through the `local` preset (SPEC §7, issue 18).

`migrate` stops the old release first: the maintenance flag `<DATA_DIR>/run/maintenance`
names it, and the fake app's /healthz answers 503 for it as the real one does
(opentrace/maintenance.py); `healthcheck` reports the measured downtime and removes the flag;
every way the run ends — a failure at `migrate`, a kill and the restart — takes it away and
the old release serves again. The data dir is the app's: a link planted where the flag goes
is replaced, never followed. A release that does not declare downtime never writes the flag.
"""

from __future__ import annotations

import json
import re
import signal

import pytest

from host_agent.journal import Journal, JournalRefused, RunRecord, validate
from testing.agent import (
    manifest_body,
    paused_run,
    run_agent,
    trigger_fields,
    write_trigger,
)


def downtime_trigger(version: str = "1.2.0", **entry: object) -> dict:
    document = json.loads(manifest_body(version))
    document["releases"][0].update({"downtime": True, **entry})
    return trigger_fields(version, manifest=json.dumps(document).encode())


def messages(backend, run_id: str, step: str) -> str:
    return " | ".join(
        e.get("message") or ""
        for e in backend.run_events(run_id)
        if e["kind"] == "step" and e.get("step") == step and e["state"] != "started"
    )


def flag(project):  # type: ignore[no-untyped-def]
    return project.data_dir / "run" / "maintenance"


def test_the_old_release_answers_503_while_it_migrates_and_the_downtime_is_reported(project, backend):
    run_id = write_trigger(project, downtime_trigger(downtime_seconds=30))
    with paused_run(project, backend, "migrate") as agent:
        during = json.loads(flag(project).read_text())
        health_during = backend.maintenance_for() == project.served()
        returncode = agent.resume()
    assert returncode == 0, agent.stderr
    assert during == {"stopped": "1.1.5"}
    assert health_during
    assert backend.final_state(run_id) == "succeeded"
    assert project.served() == "1.2.0"
    assert not flag(project).exists()
    migrate = messages(backend, run_id, "migrate")
    assert "1.1.5 stopped serving for the downtime 1.2.0 declares (about 30 s)" in migrate
    assert "/healthz answers 503" in migrate
    assert "starts after the declared downtime" in messages(backend, run_id, "deploy")
    healthcheck = messages(backend, run_id, "healthcheck")
    assert re.search(r"downtime \d+\.\d s \(declared: about 30 s\); maintenance page removed", healthcheck)
    last = Journal(project.state_dir).last()
    assert last is not None
    assert last.serving_stopped_at is not None


def test_a_downtime_release_that_fails_at_migrate_serves_the_old_release_again(project, backend):
    run_id = write_trigger(project, downtime_trigger())

    done = run_agent(project, backend, FAKE_FAIL="migrate:1.2.0")

    assert done.returncode == 1, done.stderr
    assert backend.final_state(run_id) == "rolled_back"
    assert not flag(project).exists()
    assert project.served() == "1.1.5"
    rollback = messages(backend, run_id, "rollback")
    assert "maintenance page removed" in rollback
    assert "1.1.5 serves again after a downtime of" in rollback
    logged = [
        line
        for e in backend.run_events(run_id)
        if e["kind"] == "log" and e.get("step") == "migrate"
        for line in e["lines"]
    ]
    assert any("1.1.5 stopped serving for the downtime 1.2.0 declares (no length given)" in x for x in logged)


@pytest.mark.parametrize("boundary", ["deploy", "healthcheck"])
def test_a_kill_while_the_old_release_is_stopped_is_undone_on_restart(project, backend, boundary):
    run_id = write_trigger(project, downtime_trigger())

    killed = run_agent(project, backend, OPENTRACE_AGENT_CRASH_AT=boundary)
    assert killed.returncode == -signal.SIGKILL
    assert json.loads(flag(project).read_text()) == {"stopped": "1.1.5"}
    restarted = run_agent(project, backend)

    assert restarted.returncode == 1, restarted.stderr
    assert backend.final_state(run_id) == "rolled_back"
    assert not flag(project).exists()
    assert project.served() == "1.1.5"
    assert "maintenance page removed" in messages(backend, run_id, "rollback")


def test_a_link_planted_where_the_flag_goes_is_replaced_not_followed(project, backend, tmp_path):
    target = tmp_path / "outside"
    target.write_text("not the agent's to write\n")
    (project.data_dir / "run").mkdir()
    flag(project).symlink_to(target)
    run_id = write_trigger(project, downtime_trigger())

    done = run_agent(project, backend)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert target.read_text() == "not the agent's to write\n"
    assert not flag(project).exists()
    assert not flag(project).is_symlink()


def test_a_run_dir_that_is_a_link_fails_migrate_before_anything_migrated(project, backend, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project.data_dir / "run").symlink_to(elsewhere)
    run_id = write_trigger(project, downtime_trigger())

    done = run_agent(project, backend)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    assert "cannot open" in messages(backend, run_id, "migrate")
    assert list(elsewhere.iterdir()) == []
    assert not any(line.split()[0] == "migrate" for line in project.manage_log())
    assert project.served() == "1.1.5"


def test_a_release_without_declared_downtime_never_stops_serving(project, backend):
    run_id = write_trigger(project, trigger_fields("1.2.0"))
    with paused_run(project, backend, "migrate") as agent:
        during = flag(project).exists()
        returncode = agent.resume()
    assert returncode == 0, agent.stderr
    assert not during
    assert backend.final_state(run_id) == "succeeded"
    assert "stopped serving" not in messages(backend, run_id, "migrate")
    assert Journal(project.state_dir).last().serving_stopped_at is None  # type: ignore[union-attr]


RECORD = {
    "run_id": "6f1c2a4e-0b7d-4c39-9a51-3d2e8f7b6a10",
    "target_version": "1.2.0",
    "git_tag": "v1.2.0",
    "git_commit": None,
    "from_version": "1.1.5",
    "from_commit": "a" * 40,
    "from_branch": "main",
    "started_at": "2026-01-01T00:00:00+00:00",
}


def test_a_journal_written_before_the_field_existed_loads():
    assert validate(dict(RECORD)) == RunRecord(**RECORD)
    assert validate({**RECORD, "serving_stopped_at": 12.5}).serving_stopped_at == 12.5


@pytest.mark.parametrize("value", [True, "12.5", float("nan"), float("inf"), [1]])
def test_a_journal_with_a_bad_stop_time_is_refused(value):
    with pytest.raises(JournalRefused, match="serving_stopped_at"):
        validate({**RECORD, "serving_stopped_at": value})


def test_a_directory_planted_where_the_flag_goes_fails_migrate_before_anything_migrated(project, backend):
    (project.data_dir / "run" / "maintenance").mkdir(parents=True)
    run_id = write_trigger(project, downtime_trigger())

    done = run_agent(project, backend)

    assert done.returncode == 1
    assert backend.final_state(run_id) == "rolled_back"
    assert "cannot write the maintenance flag" in messages(backend, run_id, "migrate")
    assert not any(line.split()[0] == "migrate" for line in project.manage_log())
    assert project.served() == "1.1.5"
    assert flag(project).is_dir()  # not the agent's to remove
