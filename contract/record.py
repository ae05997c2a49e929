"""The update's own record: the tables a database restore keeps as they are now (SPEC §7).

A restore puts the database back as it was when the backup was taken, except these rows:
the runs, their events, the notices sent and the admin log, which would otherwise rewind
(a progress page going back to "requested", a notice sent twice, an admin-log entry gone).
The host agent carries the current rows across the restore (`host_agent.backup`); the
backend's tests check that the names match its models.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecordTable:
    name: str
    # Columns referring to a table the restore rewinds: a row whose target is gone is left
    # out (required) or keeps the row with the reference cleared (nullable).
    required: dict[str, str] = field(default_factory=dict)
    nullable: dict[str, str] = field(default_factory=dict)


RECORD_TABLES: tuple[RecordTable, ...] = (
    RecordTable("updates_updaterun", nullable={"requested_by_id": "auth_user"}),
    RecordTable("updates_updateevent", required={"run_id": "updates_updaterun"}),
    RecordTable("updates_agentheartbeat"),
    RecordTable("smtpconfig_noticelog"),
    RecordTable(
        "django_admin_log",
        required={"user_id": "auth_user"},
        nullable={"content_type_id": "django_content_type"},
    ),
)
