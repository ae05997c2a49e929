"""Settings → Update policy: one row, edited by who may install updates, validated."""

from __future__ import annotations

from datetime import time

import pytest
from django.contrib.admin.models import LogEntry

from updates.models import UpdatePolicy

pytestmark = pytest.mark.django_db

PAGE = "/admin/updates/policy/"


def form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "mode": "security",
        "window_days": ["6", "2"],
        "window_start": "03:00",
        "window_minutes": "90",
        "time_zone": "Europe/Berlin",
    }
    data.update(overrides)
    return data


def test_the_default_is_manual_every_day_at_three_utc():
    policy = UpdatePolicy.load()
    assert (policy.mode, policy.window_days, policy.window_start, policy.time_zone) == (
        "manual",
        [0, 1, 2, 3, 4, 5, 6],
        time(3, 0),
        "UTC",
    )


def test_it_is_listed_under_settings(client, operator):
    client.force_login(operator)
    assert 'href="/admin/updates/policy/"' in client.get("/admin/").content.decode()


def test_the_operator_saves_a_policy(client, operator):
    client.force_login(operator)

    response = client.post(PAGE, form(), follow=True)

    assert "The update policy was saved." in response.content.decode()
    policy = UpdatePolicy.load()
    assert (policy.mode, sorted(policy.window_days), policy.window_minutes, policy.time_zone) == (
        "security",
        [2, 6],
        90,
        "Europe/Berlin",
    )
    assert "Wednesday, Sunday at 03:00 for 1 h 30 min (Europe/Berlin)" in response.content.decode()
    assert LogEntry.objects.filter(object_repr="update policy").exists()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"time_zone": "Mars/Olympus"}, "Select a valid choice."),
        ({"window_minutes": "5"}, "greater than or equal to 15"),
        ({"window_days": []}, "Automatic installs need a maintenance window"),
    ],
)
def test_a_bad_policy_is_refused_with_the_reason(client, operator, overrides, error):
    client.force_login(operator)
    response = client.post(PAGE, form(**overrides))
    assert error in response.content.decode()
    assert UpdatePolicy.load().mode == "manual"


def test_staff_without_the_permission_see_it_but_cannot_change_it(client, staff_user):
    client.force_login(staff_user)
    assert client.get(PAGE).status_code == 200
    assert client.post(PAGE, form()).status_code == 403
    assert UpdatePolicy.load().mode == "manual"
