"""One update at a time (SPEC §8): while a run holds the lock, a backup or another run is refused."""

from __future__ import annotations

from host_agent.backup import backup_sets
from testing.agent import paused_run, run_agent, trigger_fields, write_trigger


def test_a_backup_and_a_second_run_are_refused_while_a_run_is_in_a_slow_step(project, backend):
    first = write_trigger(project, trigger_fields("1.2.0"))
    with paused_run(project, backend, "migrate") as running:  # inside `migrate`, after its backup
        sets_during_the_run = backup_sets(project.data_dir / "backups")
        project.add_release("1.3.0")
        second = write_trigger(project, trigger_fields("1.3.0"))

        backup = run_agent(project, backend, "backup")
        other_run = run_agent(project, backend, "once")

        still_paused = running.process.poll() is None
        returncode = running.resume()

    assert still_paused, "the run ended while the other commands ran: nothing was tested"
    assert backup.returncode == 2, backup.stdout + backup.stderr
    assert "is held by another agent process" in backup.stderr
    assert backup_sets(project.data_dir / "backups") == sets_during_the_run
    assert other_run.returncode == 2, other_run.stderr
    assert "is held by another agent process" in other_run.stderr
    assert backend.run_events(second) == []
    assert (project.updates / "trigger").exists()  # left for later, not claimed, not rejected

    assert returncode == 0, running.stderr
    assert backend.final_state(first) == "succeeded"
    assert project.manage_log().count("migrate --noinput") == 1

    # Once the run is over, the waiting trigger runs.
    assert run_agent(project, backend, "once").returncode == 0
    assert backend.final_state(second) == "succeeded"
    assert project.head() == project.commits["1.3.0"]
