"""The confirmation page says beforehand what a release's migrations mean (SPEC §7): downtime,
with its expected length, and a rollback that would restore the backup."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from contract.registry import parse_document
from testing.registry_server import full_document
from updates.checking import run_check
from updates.models import RegistryCheck

pytestmark = pytest.mark.django_db


def offer(registry_server, **release: object) -> None:
    registry_server.serve_json(
        "/version.json",
        full_document({"version": "1.2.0", "notes": "n", "git_commit": "b" * 40, **release}, meta_version=7),
    )
    check = run_check(RegistryCheck.Trigger.SCHEDULED)
    assert check.outcome == "ok", check.error


def confirmation(client, operator) -> str:
    client.force_login(operator)
    response = client.get(reverse("updates_install_confirm"), {"version": "1.2.0"})
    assert response.status_code == 200
    return response.content.decode()


def test_a_backward_compatible_release_warns_of_nothing(client, operator, registry_server, agent_online):
    offer(registry_server)
    page = confirmation(client, operator)
    assert 'id="confirm-downtime"' not in page
    assert 'id="confirm-restore"' not in page
    assert "A failure reverts those migrations and rolls back to 1.1.5" in page


def test_a_release_that_declares_downtime_says_so_with_its_expected_length(
    client, operator, registry_server, agent_online
):
    offer(registry_server, downtime=True, downtime_seconds=150)
    page = confirmation(client, operator)
    assert "This release needs downtime" in page
    assert "(expected: about 2 min 30 s)" in page


def test_a_release_that_declares_downtime_without_a_length(client, operator, registry_server, agent_online):
    offer(registry_server, downtime=True)
    page = confirmation(client, operator)
    assert "This release needs downtime" in page
    assert "expected:" not in page


def test_a_release_with_an_irreversible_migration_warns_of_the_restore(
    client, operator, registry_server, agent_online
):
    offer(registry_server, irreversible="events are re-partitioned by day")
    page = confirmation(client, operator)
    assert "A rollback of this release restores the backup" in page
    assert "(events are re-partitioned by day)" in page
    assert "is discarded" in page


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("downtime_seconds", 0),
        ("downtime_seconds", "5 min"),
        ("downtime_seconds", True),
        ("irreversible", "  "),
    ],
)
def test_a_malformed_field_drops_the_release_with_a_warning(field, value):
    body = json.dumps(full_document({"version": "1.2.0", field: value}, meta_version=1)).encode()
    document = parse_document(body, keys={}, now=datetime.now(UTC))
    assert document.releases == ()
    assert any(f"invalid {field}" in warning for warning in document.warnings)
