"""The backup sets on the host, as the agent reports them (SPEC §12 "Backups").

The sets live in `<DATA_DIR>/backups/`, which only the agent can enter (0700, root's): the
web app never reads them. The agent posts the list after every backup, retention and
verification (`POST /api/updates/agent/backups`); `BackupSet.replace_all()` makes the table
that list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone


class Verification(models.TextChoices):
    UNVERIFIED = "unverified", "Not verified yet"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Verification failed"


class BackupSet(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField()
    from_version = models.CharField(max_length=64, blank=True)
    commit = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    database = models.CharField(max_length=16, blank=True)
    clickhouse_rows = models.JSONField(default=dict, blank=True)
    verification = models.CharField(
        max_length=16, choices=Verification.choices, default=Verification.UNVERIFIED
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_detail = models.TextField(blank=True)
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def replace_all(cls, sets: list[dict[str, Any]], *, now: datetime | None = None) -> int:
        """The table becomes exactly the reported sets (a set gone from the host goes here too)."""
        now = now or timezone.now()
        with transaction.atomic():
            cls.objects.exclude(name__in=[s["name"] for s in sets]).delete()
            for values in sets:
                cls.objects.update_or_create(name=values["name"], defaults={**values, "reported_at": now})
        return len(sets)
