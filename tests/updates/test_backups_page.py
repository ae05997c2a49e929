"""The Backups page (SPEC §12) and the agent's report behind it (`POST /api/updates/agent/backups`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from opentrace.clickhouse import client as clickhouse
from testing.agent_client import post
from testing.factories import admin_log
from testing.tracking import emptied_engine, migrate_engine
from tracking.models import Project
from updates.models import BackupSet

BACKUPS = "/api/updates/agent/backups"
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def migrated_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrate_engine(tmp_path_factory.mktemp("tracking-engine"))


@pytest.fixture
def engine(migrated_engine: Path) -> Iterator[Path]:
    """The tracking tests' embedded ClickHouse, migrated, with no events in it."""
    with emptied_engine(migrated_engine) as path:
        yield path


def reported(name: str, taken, **extra) -> dict:
    return {
        "name": name,
        "created_at": taken.isoformat(),
        "from_version": "1.1.5",
        "commit": "a" * 40,
        "size_bytes": 3 * 2**20,
        "database": "postgres",
        "clickhouse_rows": {"events": 2},
        "verification": {"state": "verified", "at": taken.isoformat(), "detail": "test restore: 31 tables"},
        **extra,
    }


def test_the_agents_report_becomes_the_list_of_sets(client):
    taken = timezone.now() - timedelta(hours=3)
    assert (
        post(
            client, BACKUPS, {"agent_id": "h", "sets": [reported("a", taken), reported("b", taken)]}
        ).status_code
        == 200
    )

    answer = post(client, BACKUPS, {"agent_id": "h", "sets": [reported("b", taken)]})

    assert answer.status_code == 200
    assert list(BackupSet.objects.values_list("name", flat=True)) == ["b"]  # "a" was removed by retention


@pytest.mark.parametrize(
    "sets",
    [
        "nope",
        [{"name": "x"}],
        [{"name": "x", "created_at": "yesterday"}],
        [{"name": "x", "created_at": "2026-01-01T00:00:00Z", "size_bytes": -1}],
        [{"name": "x", "created_at": "2026-01-01T00:00:00Z", "verification": {"state": "fine"}}],
        [{"name": "x", "created_at": "2026-01-01T00:00:00Z"}] * 2,
    ],
)
def test_a_malformed_report_is_refused_and_changes_nothing(client, sets):
    BackupSet.objects.create(name="kept", created_at=timezone.now())

    answer = post(client, BACKUPS, {"agent_id": "h", "sets": sets})

    assert answer.status_code == 400
    assert list(BackupSet.objects.values_list("name", flat=True)) == ["kept"]


def test_an_unsigned_report_is_refused(client):
    answer = client.post(BACKUPS, data=b'{"sets": []}', content_type="application/json")
    assert answer.status_code == 401


def test_the_page_shows_each_set_and_what_restoring_it_would_discard(client, superuser, engine):
    taken = timezone.now() - timedelta(hours=2)
    post(client, BACKUPS, {"agent_id": "h", "sets": [reported("20260101T000000Z-1.1.5", taken)]})
    with clickhouse.connect() as ch:
        ch.insert(
            "opentrace.events",
            [
                [1, uuid.uuid4(), "before", "u", taken, taken - timedelta(minutes=5)],
                [1, uuid.uuid4(), "after", "u", timezone.now(), timezone.now()],
                [1, uuid.uuid4(), "after", "v", timezone.now(), timezone.now()],
            ],
            column_names=["project_id", "event_id", "event", "distinct_id", "timestamp", "received_at"],
        )
    Project.objects.create(name="added since")
    admin_log(superuser.pk, "1", "changed since")
    client.force_login(superuser)

    page = client.get(reverse("updates_backups"))

    assert page.status_code == 200
    html = page.content.decode()
    assert "20260101T000000Z-1.1.5" in html
    assert "2 h" in html or "2 hours" in html or "120 min" in html
    assert "3.0\xa0MB" in html
    assert "OpenTrace 1.1.5" in html
    assert "Verified" in html
    assert "test restore: 31 tables" in html
    assert "2 event(s)" in html
    assert "1 tracking project(s) added" in html
    assert "1 admin change(s)" in html


def test_the_page_needs_a_permission(client, staff_user):
    client.force_login(staff_user)
    assert client.get(reverse("updates_backups")).status_code == 403


def test_the_page_is_listed_in_settings(client, superuser):
    client.force_login(superuser)
    assert reverse("updates_backups") in client.get(reverse("admin:index")).content.decode()
