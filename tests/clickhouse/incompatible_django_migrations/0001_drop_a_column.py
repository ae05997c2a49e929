"""A Django migration the running release cannot live with: it drops a column the old code reads."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.RunSQL(
            "ALTER TABLE updates_updaterun DROP COLUMN severity",
            "ALTER TABLE updates_updaterun ADD COLUMN severity varchar(16) NOT NULL DEFAULT 'normal'",
        ),
    ]
