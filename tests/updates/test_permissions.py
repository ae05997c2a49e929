"""Staff status opens the admin, nothing more (issue 16): the runs' progress and logs need the
history permission, Check now needs its own, installing needs `updates.install_update`."""

from __future__ import annotations

import pytest
from django.urls import reverse

from testing.factories import make_run
from updates.models import EventIn, RegistryCheck

pytestmark = pytest.mark.django_db

PAGE = "/admin/updates/system/"
SECRET_LINE = "cloning from the internal mirror 10.9.8.7"


@pytest.fixture
def running():
    run = make_run()
    run.record_events(
        [EventIn(1, "run", state="running"), EventIn(2, "log", step="backup", lines=[SECRET_LINE])]
    )
    return run


def test_staff_without_permission_reads_no_progress(client, staff_user, running):
    client.force_login(staff_user)
    assert client.get(reverse("updates_progress")).status_code == 403
    assert client.get(reverse("updates_progress"), {"run": str(running.pk)}).status_code == 403


def test_staff_without_permission_sees_no_run_section(client, staff_user, running):
    client.force_login(staff_user)
    page = client.get(PAGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="run-progress"' not in text
    assert 'id="run-banner"' not in text
    assert SECRET_LINE not in text
    assert str(running.pk) not in text


def test_the_history_permission_shows_progress_and_the_run_section(client, history_viewer, running):
    client.force_login(history_viewer)
    data = client.get(reverse("updates_progress")).json()
    assert data["run"]["log_tail"] == [SECRET_LINE]
    text = client.get(PAGE).content.decode()
    assert 'id="run-progress"' in text
    assert SECRET_LINE in text
    assert "Check now" not in text  # reading the history is not checking the registry


def test_staff_without_permission_cannot_check_now(client, staff_user, registry_server):
    registry_server.serve_json("/version.json", {"version": "1.2.0"})
    client.force_login(staff_user)
    assert "Check now" not in client.get(PAGE).content.decode()
    assert client.post(reverse("updates_check_now")).status_code == 403
    assert not RegistryCheck.objects.exists()


@pytest.mark.parametrize("who", ["checker", "operator", "superuser"])
def test_the_check_permission_runs_check_now(client, request, who, registry_server):
    registry_server.serve_json("/version.json", {"version": "1.2.0"})
    client.force_login(request.getfixturevalue(who))
    assert "Check now" in client.get(PAGE).content.decode()
    response = client.post(reverse("updates_check_now"), follow=True)
    assert b"Version 1.2.0 is available." in response.content
    assert RegistryCheck.objects.get().trigger == "manual"


def test_checking_does_not_open_the_runs(client, checker, running):
    client.force_login(checker)
    assert client.get(reverse("updates_progress")).status_code == 403
    assert SECRET_LINE not in client.get(PAGE).content.decode()
