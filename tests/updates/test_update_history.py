"""Update history: the read-only UpdateRun admin, its list and its detail page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from testing.factories import make_run
from updates.models import EventIn, UpdateRun

pytestmark = pytest.mark.django_db

LIST = "/admin/updates/updaterun/"


def finished_run(user=None, status="succeeded", to_version="1.2.0"):
    run = make_run(user=user, to_version=to_version, git_tag=f"v{to_version}")
    run.mark_running()
    run.mark_finished(status)
    return run


def test_the_list_and_detail_urls():
    run = make_run()
    assert reverse("admin:updates_updaterun_changelist") == LIST
    assert reverse("admin:updates_updaterun_change", args=[run.pk]) == f"{LIST}{run.pk}/change/"


@pytest.mark.parametrize("who", ["superuser", "operator"])
def test_superuser_and_operator_see_the_history(request, client, who):
    user = request.getfixturevalue(who)
    finished_run(user=user, to_version="1.2.0")
    client.force_login(user)
    response = client.get(LIST)
    assert response.status_code == 200
    text = response.content.decode()
    assert "1.1.5 → 1.2.0" in text
    assert "Succeeded" in text
    assert user.username in text


def test_staff_without_permission_cannot_see_the_history(client, staff_user):
    finished_run()
    client.force_login(staff_user)
    assert client.get(LIST).status_code == 403


def test_anonymous_and_plain_users_are_sent_to_login(client, plain_user):
    assert client.get(LIST).status_code == 302
    client.force_login(plain_user)
    assert client.get(LIST).status_code == 302


def test_nobody_can_add_change_or_delete_runs(client, superuser):
    run = finished_run()
    client.force_login(superuser)
    assert client.get(f"{LIST}add/").status_code == 403
    assert client.get(f"{LIST}{run.pk}/delete/").status_code == 403
    response = client.post(f"{LIST}{run.pk}/change/", {"status": "running"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_the_list_needs_no_query_per_row(client, superuser, django_assert_max_num_queries, django_user_model):
    users = [django_user_model.objects.create_user(f"u{i}", is_staff=True) for i in range(5)]
    for i in range(30):
        finished_run(user=users[i % 5], status="failed" if i % 3 else "succeeded")
    client.force_login(superuser)
    client.get(LIST)  # warm the session and content types
    with django_assert_max_num_queries(12):
        response = client.get(LIST)
    assert response.status_code == 200


def test_filters_by_status_and_search_by_version(client, superuser):
    finished_run(to_version="1.2.0", status="succeeded")
    finished_run(to_version="1.3.0", status="failed")
    client.force_login(superuser)
    failed = client.get(LIST, {"status__exact": "failed"}).content.decode()
    assert "→ 1.3.0" in failed
    assert "→ 1.2.0" not in failed
    found = client.get(LIST, {"q": "1.2.0"}).content.decode()
    assert "→ 1.2.0" in found
    assert "→ 1.3.0" not in found


def test_the_detail_page_has_the_timeline_with_durations_and_the_full_log(client, superuser):
    run = make_run(user=superuser)
    t0 = timezone.now()
    run.record_events(
        [
            EventIn(1, "run", state="running", at=t0),
            EventIn(2, "step", step="backup", state="started", at=t0),
            EventIn(3, "log", step="backup", lines=["line one", "<script>x</script>"], at=t0),
            EventIn(4, "step", step="backup", state="succeeded", at=t0 + timedelta(seconds=65)),
            EventIn(
                5,
                "step",
                step="deploy",
                state="failed",
                message="compose failed",
                at=t0 + timedelta(seconds=70),
            ),
            EventIn(6, "run", state="rolled_back", message="restored", at=t0 + timedelta(seconds=90)),
        ]
    )
    client.force_login(superuser)
    response = client.get(reverse("admin:updates_updaterun_change", args=[run.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert "1 min 05 s" in text  # backup took 65 s
    assert "compose failed" in text
    assert "line one" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text
    assert "restored" in text
    assert UpdateRun.objects.get().status == "rolled_back"


def test_history_is_listed_under_settings(client, superuser):
    client.force_login(superuser)
    index = client.get("/admin/").content.decode()
    assert "Update history" in index
    assert index.index("System updates") < index.index("Update history")
