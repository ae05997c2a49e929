"""What the update mails say (issue 19, points 5 and 13): the cause under "Error", the
rollback under "Rollback", and the install named once, by its name and address."""

from __future__ import annotations

import re
import uuid

import pytest

from updates.models import EventIn, UpdateRun
from updates.notices import run_notice

pytestmark = pytest.mark.django_db

MIGRATE_FAILURE = (
    "python manage.py migrate_all exited with 1: Operations to perform:\n"
    "CommandError: ClickHouse migration 0003_funnels failed at statement 1 of 2 (line 4): "
    "Unknown identifier 'steps' — recorded as failed; fix the cause, then "
    "`manage.py clickhouse_migrate resume 0003_funnels`"
)


@pytest.fixture
def run() -> UpdateRun:
    return UpdateRun.objects.create(
        from_version="1.1.5",
        to_version="1.2.0",
        git_tag="v1.2.0",
        requested_by_username="admin",
        manifest=b"{}",
        idempotency_key=uuid.uuid4().hex,
    )


def field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s+(.*)$", text, re.M)
    assert match, f"no {name!r} line in:\n{text}"
    return match.group(1)


def test_a_rolled_back_run_mail_puts_the_cause_under_error_and_the_rollback_under_rollback(run, settings):
    run.record_events(
        [
            EventIn(1, "run", state="running"),
            EventIn(2, "step", step="migrate", state="failed", message=MIGRATE_FAILURE),
            EventIn(3, "step", step="rollback", state="started"),
            EventIn(4, "step", step="rollback", state="succeeded", message="database restored from set-1"),
            EventIn(5, "run", state="rolled_back", message=f"migrate failed: {MIGRATE_FAILURE}"),
        ]
    )
    notice = run_notice(str(run.pk), "rolled_back")
    assert notice is not None
    error = field(notice.text, "Error")
    assert error.startswith("python manage.py migrate_all exited with 1: CommandError: ClickHouse migration")
    assert "(none reported)" not in notice.text
    assert field(notice.text, "Rollback") == (
        "the database was restored from the backup taken before the update, and 1.1.5 is serving again"
    )
    assert "clickhouse_migrate resume" not in error  # the rollback removed that migration
    assert '<th align="left">Error</th><td>python manage.py migrate_all' in notice.html


def test_a_failed_run_mail_says_there_was_nothing_to_roll_back(run):
    run.record_events(
        [
            EventIn(1, "run", state="running"),
            EventIn(2, "step", step="fetch", state="failed", message="no tag v1.2.0"),
            EventIn(3, "run", state="failed", message="fetch failed: no tag v1.2.0"),
        ]
    )
    notice = run_notice(str(run.pk), "failed")
    assert notice is not None
    assert field(notice.text, "Error") == "no tag v1.2.0"
    assert field(notice.text, "Rollback").startswith("none: the update failed before the new release")


def test_the_succeeded_mail_names_the_install_once(run, settings):
    settings.OPENTRACE_BASE_URL = "http://127.0.0.1:8100"
    run.record_events([EventIn(1, "run", state="running"), EventIn(2, "run", state="succeeded")])
    notice = run_notice(str(run.pk), "succeeded")
    assert notice is not None
    first = notice.text.splitlines()[0]
    assert first == "OpenTrace at http://127.0.0.1:8100 was updated from 1.1.5 to 1.2.0."
    assert "now runs OpenTrace" not in notice.text + notice.html
    assert "http://127.0.0.1:8100/admin/updates/updaterun/" in notice.text
