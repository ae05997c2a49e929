"""The "Backups" admin page (SPEC §12): each set, its age, size, versions, verification, and
what restoring it would discard now.

"Would discard" is counted from the data as it is now: events ClickHouse received after the
set was taken, and the rows of the database written since (users, tracking projects, admin
changes). A restore keeps the update's own record (contract.record), which the page says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from opentrace.clickhouse import client as clickhouse
from updates.formatting import format_duration
from updates.models import BackupSet

PERMISSION = "updates.view_backupset"


def may_see_backups(request: HttpRequest) -> bool:
    user = request.user
    return bool(
        user.is_active
        and user.is_staff
        and (user.has_perm(PERMISSION) or user.has_perm("updates.install_update"))
    )


@dataclass
class Discard:
    events: int | None
    events_error: str
    users: int
    projects: int
    admin_changes: int

    def summary(self) -> str:
        parts = [
            f"{self.events:,} event(s)"
            if self.events is not None
            else f"events: unknown ({self.events_error})",
            f"{self.users} user(s) added",
            f"{self.projects} tracking project(s) added",
            f"{self.admin_changes} admin change(s)",
        ]
        return ", ".join(parts)


def events_since(moment: datetime) -> int:
    db = clickhouse.database()
    with clickhouse.connect() as client:
        return int(
            client.query(
                f"SELECT count() FROM `{db}`.events WHERE received_at > {{t:DateTime64(3, 'UTC')}}",  # noqa: S608
                parameters={"t": moment},
            ).result_rows[0][0]
        )


def discarded_by(backup: BackupSet) -> Discard:
    try:
        events, error = events_since(backup.created_at), ""
    except Exception as exc:  # the page still shows everything else
        events, error = None, type(exc).__name__
    return Discard(
        events=events,
        events_error=error,
        users=get_user_model().objects.filter(date_joined__gt=backup.created_at).count(),
        # By name: updates does not import tracking (tracking's hold reads updates' runs).
        projects=apps.get_model("tracking", "Project")
        .objects.filter(created_at__gt=backup.created_at)
        .count(),
        admin_changes=LogEntry.objects.filter(action_time__gt=backup.created_at).count(),
    )


def backups(request: HttpRequest) -> HttpResponse:
    if not may_see_backups(request):
        raise PermissionDenied("The backups page needs the permission updates.view_backupset.")
    now = timezone.now()
    rows = [
        {
            "set": backup,
            "age": format_duration((now - backup.created_at).total_seconds()),
            "discard": discarded_by(backup),
        }
        for backup in BackupSet.objects.all()
    ]
    context = {**admin.site.each_context(request), "title": "Backups", "rows": rows}
    return render(request, "updates/backups.html", context)
