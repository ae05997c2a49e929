"""The agent API (SPEC §6), through HTTP as the agent calls it."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from django.utils import timezone

from testing.agent_client import EVENTS, HEARTBEAT, event, post, post_events, sign
from testing.factories import make_run
from updates.models import AgentHeartbeat, UpdateRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    # The agent has no session and no CSRF token: the API must not need either.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def run():
    return make_run()


def test_a_valid_batch_is_accepted_and_moves_the_run(client, run):
    response = post_events(
        client,
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="preflight", state="started"),
        event(3, "log", step="preflight", lines=["checking disk", "ok"]),
        event(4, "step", step="preflight", state="succeeded"),
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 4, "duplicates": 0}
    run.refresh_from_db()
    assert run.status == "running"
    assert run.log_lines() == ["checking disk", "ok"]


def test_a_duplicate_batch_is_acknowledged_and_changes_nothing(client, run):
    batch = [event(1, "run", state="running"), event(2, "log", lines=["a"])]
    post_events(client, run.pk, *batch)
    before = list(run.events.values_list("seq", "lines"))
    # Sent again as the agent retries: signed anew, a second later (the same pair is a replay).
    body = {"run_id": str(run.pk), "events": batch}
    response = post(client, EVENTS, body, timestamp=int(time.time()) + 1)
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 2}
    assert list(run.events.values_list("seq", "lines")) == before


def test_the_outcome_events_finish_the_run(client, run):
    post_events(
        client,
        run.pk,
        event(1, "run", state="running"),
        event(2, "step", step="migrate", state="failed", message="column exists"),
        event(3, "run", state="rolled_back", message="migrate failed; database restored"),
    )
    run.refresh_from_db()
    assert (run.status, run.failed_step, run.rollback_cause) == (
        "rolled_back",
        "migrate",
        "migrate failed; database restored",
    )


def test_a_missing_signature_is_401(client, run):
    body = json.dumps({"run_id": str(run.pk), "events": [event(1, "run", state="running")]})
    response = client.post(EVENTS, data=body, content_type="application/json")
    assert response.status_code == 401
    run.refresh_from_db()
    assert run.status == "requested"


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_OPENTRACE_SIGNATURE": "sha256=" + "0" * 64},
        {"HTTP_X_OPENTRACE_SIGNATURE": "md5=abc"},
        {"HTTP_X_OPENTRACE_SIGNATURE": ""},
        {"HTTP_X_OPENTRACE_TIMESTAMP": "yesterday"},
        {"HTTP_X_OPENTRACE_TIMESTAMP": ""},
    ],
    ids=["wrong-hmac", "wrong-scheme", "empty-signature", "word-timestamp", "empty-timestamp"],
)
def test_a_bad_signature_or_timestamp_is_401(client, run, headers):
    body = json.dumps({"run_id": str(run.pk), "events": [event(1, "run", state="running")]}).encode()
    response = client.post(EVENTS, data=body, content_type="application/json", **{**sign(body), **headers})
    assert response.status_code == 401
    assert run.events.count() == 0


# ±305, not ±301: the request itself takes time, and int() truncates the current second.
@pytest.mark.parametrize("offset", [-305, 305, -10_000, 10_000])
def test_an_old_or_future_timestamp_is_401_even_when_signed(client, run, offset):
    response = post(
        client,
        EVENTS,
        {"run_id": str(run.pk), "events": [event(1, "run", state="running")]},
        timestamp=int(time.time()) + offset,
    )
    assert response.status_code == 401
    assert "window" in response.json()["error"]


def test_a_signature_with_another_secret_is_401(client, run):
    response = post(
        client, EVENTS, {"run_id": str(run.pk), "events": [event(1, "run", state="running")]}, secret="s" * 48
    )
    assert response.status_code == 401


def test_a_signature_wrong_in_its_last_digit_is_401(client, run):
    body = json.dumps({"run_id": str(run.pk), "events": [event(1, "run", state="running")]}).encode()
    headers = sign(body)
    digest = headers["HTTP_X_OPENTRACE_SIGNATURE"]
    headers["HTTP_X_OPENTRACE_SIGNATURE"] = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    response = client.post(EVENTS, data=body, content_type="application/json", **headers)
    assert response.status_code == 401
    assert run.events.count() == 0


def test_a_reserialised_body_no_longer_matches_its_signature(client, run):
    original = json.dumps({"run_id": str(run.pk), "events": [event(1, "run", state="running")]}).encode()
    reserialised = json.dumps(json.loads(original), indent=2).encode()
    response = client.post(EVENTS, data=reserialised, content_type="application/json", **sign(original))
    assert response.status_code == 401
    assert run.events.count() == 0


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_any_method_but_post_is_405(client, method):
    response = getattr(client, method)(EVENTS)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert client.get(HEARTBEAT).status_code == 405


def test_a_declared_oversize_body_is_413_before_it_is_read(client, run):
    body = json.dumps({"run_id": str(run.pk), "events": [event(1, "run", state="running")]}).encode()
    response = client.post(
        EVENTS, data=body, content_type="application/json", **sign(body), CONTENT_LENGTH=str(2 * 1024 * 1024)
    )
    assert response.status_code == 413
    assert run.events.count() == 0


def test_an_oversize_body_is_413_before_anything_else(client, run):
    body = b'{"run_id": "x", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post(EVENTS, data=body, content_type="application/json", **sign(body))
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe", b"[]", b'"string"', b'{"run_id": "not-a-uuid", "events": []}', b"{}"],
)
def test_a_malformed_body_is_400(client, body):
    response = client.post(EVENTS, data=body, content_type="application/json", **sign(body))
    assert response.status_code == 400
    assert response.json()["error"]


NOT_JSON = [b"{not json", b"\xff\xfe", b"", b"[]", b'"string"', b"{" * 100_000]


@pytest.mark.parametrize("path", [EVENTS, HEARTBEAT])
@pytest.mark.parametrize("body", NOT_JSON, ids=["broken", "not-utf8", "empty", "list", "string", "deep"])
@pytest.mark.parametrize(
    "headers",
    [
        lambda body: {},
        lambda body: {**sign(body), "HTTP_X_OPENTRACE_SIGNATURE": "sha256=" + "0" * 64},
        lambda body: sign(body, secret="s" * 48),
        lambda body: sign(body + b" "),
        lambda body: sign(body, timestamp=int(time.time()) - 3600),
    ],
    ids=["unsigned", "wrong-hmac", "other-secret", "other-body", "old-timestamp"],
)
def test_a_body_that_is_not_json_is_401_unless_signed_the_signature_comes_first(client, path, body, headers):
    # SPEC §6: verified before the body is parsed. A parser that ran first would answer 400.
    response = client.post(path, data=body, content_type="application/json", **headers(body))
    assert response.status_code == 401
    assert response.json()["error"] != "the body is not UTF-8 JSON"


@pytest.mark.parametrize("path", [EVENTS, HEARTBEAT])
@pytest.mark.parametrize("body", NOT_JSON, ids=["broken", "not-utf8", "empty", "list", "string", "deep"])
def test_a_correctly_signed_body_that_is_not_a_json_object_is_400(client, path, body):
    response = client.post(path, data=body, content_type="application/json", **sign(body))
    assert response.status_code == 400
    assert response.json()["error"] in {"the body is not UTF-8 JSON", "the body is not a JSON object"}


@pytest.mark.parametrize(
    "bad_event",
    [
        {"seq": 0, "kind": "log"},
        {"seq": True, "kind": "log"},
        {"seq": "1", "kind": "log"},
        {"seq": 1, "kind": "party"},
        {"seq": 1, "kind": "step", "state": "started"},
        {"seq": 1, "kind": "step", "step": "deploy", "state": "exploded"},
        {"seq": 1, "kind": "run", "state": "cancelled"},
        {"seq": 1, "kind": "log", "lines": "not a list"},
        {"seq": 1, "kind": "log", "lines": [1, 2]},
        {"seq": 1, "kind": "log", "at": "tomorrow"},
        {"seq": 1, "kind": "step", "step": "../../etc", "state": "started"},
        {"seq": 2**40, "kind": "log"},
    ],
)
def test_a_malformed_event_is_400_and_nothing_is_kept(client, run, bad_event):
    response = post_events(client, run.pk, event(1, "log", lines=["fine"]) | {"seq": 5}, bad_event)
    assert response.status_code == 400
    assert run.events.count() == 0


def test_an_unknown_run_is_404(client):
    response = post_events(client, "00000000-0000-4000-8000-000000000000", event(1, "run", state="running"))
    assert response.status_code == 404


def test_an_out_of_order_terminal_transition_is_409(client, run):
    response = post_events(client, run.pk, event(1, "run", state="succeeded"))
    assert response.status_code == 409
    assert response.json()["seq"] == 1
    run.refresh_from_db()
    assert run.status == "requested"


def test_a_finished_run_refuses_new_events_with_409(client, run):
    post_events(client, run.pk, event(1, "run", state="running"), event(2, "run", state="succeeded"))
    response = post_events(client, run.pk, event(3, "run", state="failed", message="late"))
    assert response.status_code == 409
    run.refresh_from_db()
    assert (run.status, run.error) == ("succeeded", "")


def test_nul_characters_and_lone_surrogates_are_stored_not_crashed(client, run):
    lines = '["a\\u0000b", "\\ud800"]'
    body = f'{{"run_id": "{run.pk}", "events": [{{"seq": 1, "kind": "log", "lines": {lines}}}]}}'.encode()
    response = client.post(EVENTS, data=body, content_type="application/json", **sign(body))
    assert response.status_code == 200
    assert run.log_lines() == ["a\ufffdb", "?"]


def test_a_heartbeat_is_recorded(client):
    response = post(
        client,
        HEARTBEAT,
        {
            "agent_id": "docker-host",
            "agent_version": "1.0",
            "deployed_version": "1.1.5",
            "busy": False,
            "run_id": None,
            "at": timezone.now().isoformat(),
        },
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    beat = AgentHeartbeat.objects.get()
    assert (beat.agent_id, beat.deployed_version, beat.busy) == ("docker-host", "1.1.5", False)
    assert AgentHeartbeat.status().online is True


def test_a_later_heartbeat_updates_the_same_agent(client, run):
    post(client, HEARTBEAT, {"agent_id": "h", "busy": False, "run_id": None})
    post(client, HEARTBEAT, {"agent_id": "h", "busy": True, "run_id": str(run.pk)})
    beat = AgentHeartbeat.objects.get()
    assert (beat.busy, beat.run_id) == (True, run.pk)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"agent_id": ""},
        {"agent_id": 5},
        {"agent_id": "h", "busy": "yes"},
        {"agent_id": "h", "run_id": "nope"},
    ],
)
def test_a_malformed_heartbeat_is_400(client, payload):
    assert post(client, HEARTBEAT, payload).status_code == 400
    assert AgentHeartbeat.objects.count() == 0


def test_an_unsigned_heartbeat_is_401(client):
    response = client.post(HEARTBEAT, data=b'{"agent_id": "h"}', content_type="application/json")
    assert response.status_code == 401
    assert AgentHeartbeat.objects.count() == 0


def test_the_agent_is_offline_after_the_configured_silence(settings):
    from datetime import timedelta

    settings.OPENTRACE_AGENT_OFFLINE_AFTER = 90
    AgentHeartbeat.objects.create(agent_id="h", last_seen=timezone.now() - timedelta(seconds=91))
    assert AgentHeartbeat.status().online is False
    assert UpdateRun.objects.count() == 0


# --- replay (SPEC §6) ------------------------------------------------------------------------
def heartbeat_body(agent_id: str = "host-1") -> bytes:
    return json.dumps({"agent_id": agent_id, "agent_version": "1", "deployed_version": "1.1.5"}).encode()


def test_a_replayed_heartbeat_is_refused_and_keeps_no_agent_online(client):
    body = heartbeat_body()
    headers = sign(body)
    first = client.post(HEARTBEAT, data=body, content_type="application/json", **headers)
    assert first.status_code == 200
    AgentHeartbeat.objects.update(last_seen=timezone.now() - timezone.timedelta(hours=1))

    replay = client.post(HEARTBEAT, data=body, content_type="application/json", **headers)

    assert replay.status_code == 401
    assert "replay" in replay.json()["error"]
    assert not AgentHeartbeat.status().online


def test_a_replayed_event_batch_is_refused(client, run):
    body = json.dumps({"run_id": str(run.pk), "events": [event(1, "log", lines=["a"])]}).encode()
    headers = sign(body)
    assert client.post(EVENTS, data=body, content_type="application/json", **headers).status_code == 200
    replay = client.post(EVENTS, data=body, content_type="application/json", **headers)
    assert replay.status_code == 401


def test_the_same_body_signed_at_another_second_is_accepted(client, run):
    # What the agent does when it retries: it signs again, with its clock's new timestamp.
    body = heartbeat_body()
    now = int(time.time())
    for stamp in (now - 1, now):
        answer = client.post(
            HEARTBEAT, data=body, content_type="application/json", **sign(body, timestamp=stamp)
        )
        assert answer.status_code == 200


def test_a_request_that_failed_is_no_replay_when_sent_again(client):
    # A 400 (or an outage) records nothing: the agent's retry of the same bytes goes through.
    body = json.dumps({"agent_id": "host-1", "busy": "yes"}).encode()
    headers = sign(body)
    assert client.post(HEARTBEAT, data=body, content_type="application/json", **headers).status_code == 400
    assert client.post(HEARTBEAT, data=body, content_type="application/json", **headers).status_code == 400


def test_accepted_pairs_are_forgotten_once_their_timestamp_is_out_of_the_window(client):
    from updates.models import AcceptedRequest

    for agent in ("host-1", "host-2"):
        body = heartbeat_body(agent)
        assert (
            client.post(HEARTBEAT, data=body, content_type="application/json", **sign(body)).status_code
            == 200
        )
    AcceptedRequest.objects.filter(pk=AcceptedRequest.objects.order_by("pk").first().pk).update(
        timestamp=int(time.time()) - 1000  # accepted long ago: it could not verify any more
    )
    body = heartbeat_body("host-3")
    client.post(HEARTBEAT, data=body, content_type="application/json", **sign(body))
    assert AcceptedRequest.objects.count() == 2
    assert not AcceptedRequest.objects.filter(timestamp__lt=int(time.time()) - 600).exists()


# --- credentials in what the agent reports -----------------------------------------------------
TOKEN = "ghp_" + "s3cr3tT0ken" * 3


def test_credentials_in_urls_are_redacted_before_the_events_are_stored(client, run, history_viewer):
    response = post_events(
        client,
        run.pk,
        event(1, "run", state="running"),
        event(
            2,
            "log",
            step="fetch",
            lines=[
                f"fatal: unable to access 'https://x-access-token:{TOKEN}@github.com/acme/opentrace.git/'",
                f"git fetch https://{TOKEN}@github.com/acme/opentrace.git",
                f"GET https://registry.example.com/version.json?access_token={TOKEN}&channel=stable",
            ],
        ),
        event(3, "run", state="failed", message=f"fetch failed: https://deploy:{TOKEN}@git.example.com/o/r"),
    )
    assert response.status_code == 200
    run.refresh_from_db()
    stored = " ".join([*run.log_lines(), run.error, *run.events.values_list("message", flat=True)])
    assert TOKEN not in stored
    assert "https://x-access-token:***@github.com/acme/opentrace.git/" in stored
    assert "https://***@github.com/acme/opentrace.git" in stored
    assert "?access_token=***&channel=stable" in stored
    assert "https://deploy:***@git.example.com/o/r" in stored

    client.force_login(history_viewer)
    assert TOKEN not in client.get(f"/admin/updates/updaterun/{run.pk}/change/").content.decode()
    assert TOKEN not in json.dumps(client.get("/admin/updates/system/progress/", {"run": str(run.pk)}).json())
