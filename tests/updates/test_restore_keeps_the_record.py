"""A database restore (the last-resort rollback) never rewinds the update's own record (SPEC §7).

Real PostgreSQL, the agent's real backup and restore: the run, its events, its notices and
the admin log are as they were just before the restore; everything else is the backup's.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone

from contract.record import RECORD_TABLES
from host_agent.backup import BackupTools, create_backup, read_manifest, restore_database
from smtpconfig.models import NoticeLog
from testing.factories import admin_log, make_run
from tracking.models import Project
from updates.models import RunStatus, UpdateEvent, UpdateRun
from updates.models.runs import EventIn

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump, pg_restore and psql"),
]


def tools_for(tmp_path) -> BackupTools:
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL restore")
    s = connection.settings_dict
    url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    env = {**os.environ, "DATABASE_URL": url}
    if s.get("PASSWORD"):
        env["PGPASSWORD"] = s["PASSWORD"]
    return BackupTools(
        data_dir=tmp_path / "data", project_dir=tmp_path, env=env, python_cmd=[], clickhouse=False
    )


def event(seq: int, **fields) -> EventIn:
    return EventIn(seq=seq, at=timezone.now(), **fields)


def notice(kind: str, run: UpdateRun) -> None:
    NoticeLog.claim(kind=kind, key=f"{run.pk}:{kind}", recipient="ops@example.com", subject=kind, task_id="t")


def test_the_record_tables_are_the_models_tables():
    from django.apps import apps

    tables = {model._meta.db_table for model in apps.get_models()}
    assert {table.name for table in RECORD_TABLES} <= tables
    assert {"updates_updaterun", "updates_updateevent", "smtpconfig_noticelog", "django_admin_log"} <= {
        table.name for table in RECORD_TABLES
    }


def test_a_restore_keeps_the_run_its_events_notices_and_admin_log_and_rewinds_the_rest(tmp_path):
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    run = make_run(user=admin)
    admin_log(admin.pk, str(run.pk), "Requested the update 1.1.5 → 1.2.0")
    run.record_events(
        [event(1, kind="run", state="running"), event(2, kind="step", step="preflight", state="started")]
    )
    notice("run_started", run)
    kept_project = Project.objects.create(name="before the backup")
    tools = tools_for(tmp_path)
    set_dir = create_backup(tools, from_version="1.1.5", commit="c" * 40)

    # After the backup: the run goes on and ends, a notice goes out, an admin acts; and the
    # failed release's data (a project, a user) that the restore is there to discard.
    run.record_events(
        [
            event(3, kind="step", step="preflight", state="succeeded"),
            event(4, kind="step", step="migrate", state="failed", message="irreversible"),
            event(5, kind="run", state="rolled_back", message="migrate failed"),
        ]
    )
    notice("run_rolled_back", run)
    admin_log(admin.pk, "x", "Changed the SMTP settings")
    later_user = User.objects.create_user("later")
    admin_log(later_user.pk, "y", "by a user the restore removes")
    Project.objects.create(name="after the backup")
    kept_project.delete()
    connections.close_all()

    line = restore_database(tools, set_dir, read_manifest(set_dir))

    assert "record kept" in line
    run.refresh_from_db()
    assert run.status == RunStatus.ROLLED_BACK
    assert list(UpdateEvent.objects.filter(run=run).values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    assert set(NoticeLog.objects.values_list("kind", flat=True)) == {"run_started", "run_rolled_back"}
    messages = set(LogEntry.objects.values_list("change_message", flat=True))
    assert {"Requested the update 1.1.5 → 1.2.0", "Changed the SMTP settings"} <= messages
    # Not the record: as the backup has it (the entry of a user who only existed later goes too).
    assert "by a user the restore removes" not in messages
    assert not User.objects.filter(username="later").exists()
    assert list(Project.objects.values_list("name", flat=True)) == ["before the backup"]
    # A notice already sent is not sent again: its claim is still there.
    assert (
        NoticeLog.claim(
            kind="run_rolled_back",
            key=f"{run.pk}:run_rolled_back",
            recipient="ops@example.com",
            subject="",
            task_id="u",
        )
        is None
    )
    # New rows after the restore get fresh ids (the sequences were moved past the kept rows).
    admin_log(admin.pk, "z", "after the restore")
    other = make_run()
    other.record_events([event(1, kind="run", state="running")])
    assert UpdateEvent.objects.count() == 6


def test_a_failed_restore_changes_nothing_the_record_included(tmp_path):
    run = make_run()
    run.record_events([event(1, kind="run", state="running")])
    tools = tools_for(tmp_path)
    set_dir = create_backup(tools, from_version="1.1.5", commit="c" * 40)
    run.record_events([event(2, kind="step", step="backup", state="started")])
    (set_dir / "database.pgdump").write_bytes(b"PGDMP not really")
    connections.close_all()

    with pytest.raises(Exception, match="pg_restore"):
        restore_database(tools, set_dir, {"database": "postgres"})

    assert UpdateEvent.objects.filter(run=run).count() == 2
    assert UpdateRun.objects.filter(
        pk=run.pk, requested_at__lte=timezone.now() + timedelta(seconds=1)
    ).exists()
    assert uuid.UUID(str(run.pk))


def test_the_progress_json_never_shows_an_earlier_state_across_a_restore(client, tmp_path):
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    run = make_run(user=admin)
    run.record_events(
        [event(1, kind="run", state="running"), event(2, kind="step", step="preflight", state="started")]
    )
    tools = tools_for(tmp_path)
    set_dir = create_backup(tools, from_version="1.1.5", commit="c" * 40)
    url = f"/admin/updates/system/progress/?run={run.pk}"
    shown = []

    def poll() -> None:
        body = client.get(url).json()["run"]
        shown.append((body["status_rank"], len(body["steps"]), body["status"]))

    poll()
    run.record_events(
        [
            event(3, kind="step", step="preflight", state="succeeded"),
            event(4, kind="step", step="backup", state="started"),
            event(5, kind="step", step="rollback", state="started"),
        ]
    )
    poll()
    connections.close_all()
    restore_database(tools, set_dir, read_manifest(set_dir))
    poll()
    run.record_events(
        [event(6, kind="step", step="rollback", state="succeeded"), event(7, kind="run", state="rolled_back")]
    )
    poll()

    ranks = [rank for rank, _, _ in shown]
    steps = [count for _, count, _ in shown]
    assert ranks == sorted(ranks)
    assert steps == sorted(steps)
    assert shown[2][2] == "running"  # after the restore: still where it was, not "requested"
    assert shown[-1][2] == "rolled_back"
