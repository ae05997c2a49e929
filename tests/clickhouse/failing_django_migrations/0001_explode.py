"""A Django migration that always fails, for `migrate_all`'s failure report."""

from __future__ import annotations

from django.db import migrations


def explode(apps, schema_editor):
    raise RuntimeError("the metadata backfill found a row it cannot convert")


class Migration(migrations.Migration):
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(explode, migrations.RunPython.noop)]
