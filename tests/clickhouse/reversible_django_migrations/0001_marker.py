"""A Django migration with a reverse: `migrate_all --revert-to` undoes it."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.RunSQL("CREATE TABLE revert_marker (id integer)", "DROP TABLE revert_marker"),
    ]
