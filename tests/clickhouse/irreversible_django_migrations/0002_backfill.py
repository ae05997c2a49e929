"""A Django migration without a reverse (RunPython with no reverse_code)."""

from __future__ import annotations

from django.db import migrations


def backfill(apps, schema_editor):
    pass


class Migration(migrations.Migration):
    dependencies = [("opentrace", "0001_marker")]
    operations = [migrations.RunPython(backfill)]
