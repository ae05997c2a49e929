"""The confirmation page's estimate: space needed against free, expected duration, downtime."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse

from testing.factories import make_run
from testing.policies import heartbeat, publish
from updates import estimate
from updates.models import RunStatus

pytestmark = pytest.mark.django_db


def confirmation(client, operator) -> str:
    client.force_login(operator)
    return client.get(reverse("updates_install_confirm")).content.decode()


def test_a_first_update_says_so_and_shows_space_against_free(client, operator, registry_server):
    publish(registry_server, {"version": "1.2.0"})
    heartbeat()
    page = confirmation(client, operator)
    assert "first update: no past run on this install to go by" in page
    free = estimate.format_bytes(shutil.disk_usage(settings.DATA_DIR).free)
    assert f"{free} free" in page
    assert "build about 1.0 GiB" in page
    assert "none declared" in page


def test_the_duration_is_the_median_of_past_successful_runs(client, operator, registry_server):
    for minutes, status in ((2, RunStatus.SUCCEEDED), (3, RunStatus.SUCCEEDED), (9, RunStatus.SUCCEEDED),
                            (60, RunStatus.FAILED)):  # fmt: skip
        run = make_run(to_version="1.1.5")
        run.mark_running()
        run.mark_finished(status, at=run.started_at + timedelta(minutes=minutes))
    publish(registry_server, {"version": "1.2.0"})
    page = confirmation(client, operator)
    assert "about 3 min 00 s (the median of this install's last 3 successful updates)" in page


def test_declared_downtime_is_shown(client, operator, registry_server):
    publish(registry_server, {"version": "1.2.0", "downtime": True})
    assert "<strong>declared</strong>" in confirmation(client, operator)


def test_the_backup_estimate_counts_the_data_dir_without_its_backups(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "old.tar").write_bytes(b"x" * 5000)
    (tmp_path / "keep").write_bytes(b"y" * 3000)
    from contract.registry import Release

    cost = estimate.estimate(Release("1.2.0"))
    assert cost.backup_bytes - estimate.database_bytes() == 3000
    assert cost.needed_bytes == cost.backup_bytes + estimate.BUILD_ALLOWANCE_BYTES + estimate.MARGIN_BYTES
