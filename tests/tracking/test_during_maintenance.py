"""While a downtime release migrates (local: the maintenance flag names this release), the
tracking endpoint keeps acknowledging events into its durable buffer (SPEC §13)."""

from __future__ import annotations

import pytest

from contract import maintenance
from opentrace.version import running_version
from testing.tracking import event, post

pytestmark = pytest.mark.django_db


def test_events_are_acknowledged_and_buffered_while_the_dashboard_shows_the_maintenance_page(
    client, project, buffer, settings, tmp_path
):
    settings.DATA_DIR = tmp_path
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "maintenance").write_bytes(maintenance.encode(running_version()))
    assert client.get("/admin/login/").status_code == 503

    response = post(client, {"events": [event(1), event(2)]}, project.write_key)

    assert (response.status_code, response.json()) == (200, {"accepted": 2})
    batch = buffer.read(100)
    assert batch is not None
    assert [e.distinct_id for record in batch.records for e in record.events] == ["user-1", "user-2"]
