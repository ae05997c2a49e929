"""The run's outcome on the System updates page: rendered by the server, the same words live and reloaded."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse

from testing.factories import make_run, request_run
from updates import actions, trigger
from updates.models import EventIn, UpdateRun

pytestmark = pytest.mark.django_db

PAGE = "/admin/updates/system/"


def shown_outcome(client) -> str:
    page = client.get(PAGE).content.decode()
    match = re.search(r'<p id="run-headline">(.*?)</p>', page, re.S)
    assert match, "the page shows no outcome row"
    return unescape(match.group(1)).strip()


def polled_outcome(client, run: UpdateRun) -> str:
    return client.get(reverse("updates_progress"), {"run": str(run.pk)}).json()["run"]["outcome"]


def finish(run: UpdateRun, *events: EventIn) -> UpdateRun:
    run.record_events([EventIn(1, "run", state="running"), *events])
    run.refresh_from_db()
    return run


def test_a_succeeded_run_says_the_release_is_installed_after_a_reload(client, history_viewer):
    run = finish(make_run(), EventIn(2, "run", state="succeeded", message="1.2.0 is running and healthy"))
    client.force_login(history_viewer)
    assert shown_outcome(client) == "Now on 1.2.0 — the update from 1.1.5 succeeded."
    assert polled_outcome(client, run) == shown_outcome(client)


def test_a_rolled_back_run_names_the_failing_step_and_the_cause(client, history_viewer):
    run = finish(
        make_run(),
        EventIn(2, "step", step="healthcheck", state="failed", message="/healthz never reported 1.2.0"),
        EventIn(3, "run", state="rolled_back", message="healthcheck failed: /healthz never reported 1.2.0"),
    )
    client.force_login(history_viewer)
    # The step is named once; the rollback step reported nothing, so no data claim is made.
    expected = (
        "Still on 1.1.5 — 1.2.0 failed at healthcheck: /healthz never reported 1.2.0; "
        "the previous release (1.1.5) is serving again."
    )
    assert shown_outcome(client) == expected
    assert polled_outcome(client, run) == expected


def test_a_failed_run_names_the_failing_step_and_the_error(client, history_viewer):
    run = finish(
        make_run(),
        EventIn(2, "step", step="fetch", state="failed", message="no tag v1.2.0"),
        EventIn(3, "run", state="failed", message="fetch failed: no tag v1.2.0"),
    )
    client.force_login(history_viewer)
    assert shown_outcome(client) == (
        "Still on 1.1.5 — 1.2.0 failed at fetch: no tag v1.2.0; nothing was changed, 1.1.5 kept serving."
    )
    assert polled_outcome(client, run) == shown_outcome(client)


def test_an_expired_run_says_no_agent_claimed_it(client, history_viewer, settings):
    run = make_run()
    assert actions.expire_run(run.pk)
    client.force_login(history_viewer)
    assert shown_outcome(client).startswith(
        f"Not started — No update agent claimed the update within {settings.OPENTRACE_TRIGGER_TIMEOUT} s."
    )
    assert polled_outcome(client, run) == shown_outcome(client)


def test_a_cancelled_run_says_who_cancelled_it(client, superuser):
    run = make_run()
    actions.cancel_run(run, by=superuser)
    client.force_login(superuser)
    assert shown_outcome(client) == "Cancelled by root_admin before an agent claimed it; nothing was changed."
    assert polled_outcome(client, run) == shown_outcome(client)


def test_hostile_error_text_in_the_outcome_is_escaped(client, history_viewer):
    finish(make_run(), EventIn(2, "run", state="failed", message="<script>alert(1)</script>"))
    client.force_login(history_viewer)
    page = client.get(PAGE).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- what the page offers around a run -----------------------------------------------------
def test_a_waiting_run_offers_cancel_and_explains_why_install_is_refused(
    client, operator, offered, agent_online
):
    make_run()
    client.force_login(operator)
    page = client.get(PAGE).content.decode()
    assert 'id="run-cancel"' in page
    # The refusal speaks of the run shown below, not of "another update (… (requested))".
    assert '<p class="help" id="install-refusal">The update to 1.2.0 is in progress below' in page
    # No Install button while it runs: the page reloads itself when the run ends.
    assert 'id="install-action"' not in page


def test_a_claimed_run_offers_no_cancel(client, operator, offered, agent_online):
    run = make_run()
    run.mark_running()
    client.force_login(operator)
    assert 'id="run-cancel"' not in client.get(PAGE).content.decode()


def test_after_a_run_ended_the_install_button_is_back(client, operator, offered, agent_online):
    finish(make_run(), EventIn(2, "run", state="failed", message="fetch failed"))
    client.force_login(operator)
    page = client.get(PAGE).content.decode()
    assert '<p class="help" id="install-refusal" hidden>' in page
    assert '<div class="ot-actions" id="install-action">' in page
    assert client.get(reverse("updates_progress")).json()["install_refusal"] is None


def test_progress_tells_an_operator_why_install_is_refused_while_a_run_waits(
    client, operator, offered, agent_online
):
    make_run()
    client.force_login(operator)
    assert "is in progress below" in client.get(reverse("updates_progress")).json()["install_refusal"]


def test_progress_tells_no_install_refusal_to_staff_who_cannot_install(
    client, history_viewer, offered, agent_online
):
    make_run()
    client.force_login(history_viewer)
    assert "install_refusal" not in client.get(reverse("updates_progress")).json()


def test_a_cancel_posted_after_the_agent_claimed_the_trigger_is_refused(
    client, operator, offered, agent_online, django_capture_on_commit_callbacks
):
    # The page still showed the button: the agent claimed the trigger but has not reported yet.
    with django_capture_on_commit_callbacks(execute=True):
        run = request_run(operator)
    trigger.trigger_path().unlink()  # the agent took it
    client.force_login(operator)
    response = client.post(reverse("updates_cancel", args=[run.pk]), follow=True)
    assert b"could not be cancelled: An agent has already claimed this run" in response.content
    run.refresh_from_db()
    assert run.status == "requested"
