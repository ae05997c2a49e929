"""Projects in the admin's Settings: the write key is generated, shown, and rotated."""

from __future__ import annotations

import pytest

from testing.tracking import event, post
from tracking.models import Project

pytestmark = pytest.mark.django_db


def test_projects_are_listed_under_settings(client, superuser):
    client.force_login(superuser)
    page = client.get("/admin/")
    settings_section = page.content.decode().split("Settings", 1)[1]
    assert "/admin/tracking/project/" in settings_section


def test_adding_a_project_generates_a_key_that_works_at_once(client, superuser):
    client.force_login(superuser)
    response = client.post("/admin/tracking/project/add/", {"name": "Docs site", "enabled": "on"})
    assert response.status_code == 302
    project = Project.objects.get(name="Docs site")
    assert project.write_key.startswith("otk_")
    assert len(project.write_key) > 30
    page = client.get(f"/admin/tracking/project/{project.pk}/change/").content.decode()
    assert project.write_key in page
    client.logout()
    assert post(client, {"events": [event()]}, project.write_key).status_code == 200


def test_rotating_refuses_the_old_key_and_accepts_the_new(client, superuser, project):
    old = project.write_key
    assert post(client, {"events": [event()]}, old).status_code == 200  # now cached
    client.force_login(superuser)
    response = client.post(
        "/admin/tracking/project/",
        {"action": "rotate_write_keys", "_selected_action": [project.pk]},
        follow=True,
    )
    assert "New write key for Shop" in response.content.decode()
    project.refresh_from_db()
    assert project.write_key != old
    assert project.key_rotated_at is not None
    client.logout()
    assert post(client, {"events": [event()]}, old).status_code == 401
    assert post(client, {"events": [event()]}, project.write_key).status_code == 200


def test_other_processes_refuse_a_rotated_key_once_their_cache_expires(project, settings):
    from tracking import keys

    now = [100.0]
    assert keys.project_for_key(project.write_key, clock=lambda: now[0]) == project.pk
    old = project.write_key
    project.rotate_key()  # in another process: this one's cache is not cleared
    assert keys.project_for_key(old, clock=lambda: now[0]) == project.pk
    now[0] += settings.OPENTRACE_TRACKING_KEY_TTL + 0.1
    assert keys.project_for_key(old, clock=lambda: now[0]) is None


def test_staff_without_permission_cannot_see_keys(client, staff_user, project):
    client.force_login(staff_user)
    assert client.get(f"/admin/tracking/project/{project.pk}/change/").status_code == 403
