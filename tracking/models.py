"""Projects: who may send events, identified by a write key (`X-OpenTrace-Key`).

A write key is what an SDK embeds, often in a web page, so it is shown to admins rather
than kept like a password; it only lets its holder add events to its project. Its
`project_id` in ClickHouse is the row's primary key.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone

KEY_PREFIX = "otk_"


def new_write_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


class Project(models.Model):
    name = models.CharField(max_length=200)
    write_key = models.CharField(max_length=64, unique=True, default=new_write_key, editable=False)
    enabled = models.BooleanField(
        default=True, help_text="A disabled project's key is refused (401); its events are kept."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    key_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name

    def rotate_key(self) -> str:
        """Replace the write key; the old one is refused once the key caches expire (seconds)."""
        self.write_key = new_write_key()
        self.key_rotated_at = timezone.now()
        self.save(update_fields=["write_key", "key_rotated_at"])
        return self.write_key
