"""Building runs: the bare model row, or the whole install flow."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.admin.models import ADDITION, LogEntry

from updates import actions
from updates.models import UpdateRun


def run_fields(**overrides: Any) -> dict[str, Any]:
    """What `UpdateRun.request` takes for a run from 1.1.5 to 1.2.0 (a new idempotency key)."""
    values = {
        "user": None,
        "from_version": "1.1.5",
        "to_version": "1.2.0",
        "git_tag": "v1.2.0",
        "git_commit": None,
        "severity": "normal",
        "manifest": b'{"version": "1.2.0"}',
        "manifest_verified": False,
        "idempotency_key": uuid.uuid4().hex,
    }
    values.update(overrides)
    return values


def make_run(**overrides: Any) -> UpdateRun:
    """A requested run row, as `UpdateRun.request` makes it: no refusal rules, no trigger file.

    For the state machine, the agent API and the pages; `request_run` is the real flow."""
    run, created = UpdateRun.request(**run_fields(**overrides))
    assert created
    return run


def request_run(user: Any = None, **overrides: Any) -> UpdateRun:
    """A run requested the way the Install button does (`actions.request_install`): the
    refusal rules apply, the trigger is written when the transaction commits. Needs the
    `offered` and `agent_online` fixtures (or the refusal they would prevent is raised)."""
    return actions.request_install(user=user, idempotency_key=uuid.uuid4().hex, **overrides)


def admin_log(user_id: int, object_id: str, message: str) -> LogEntry:
    """An admin log entry (an addition) by `user_id`, as the admin's own views write them."""
    return LogEntry.objects.create(
        user_id=user_id,
        object_id=object_id,
        object_repr=object_id,
        action_flag=ADDITION,
        change_message=message,
    )
