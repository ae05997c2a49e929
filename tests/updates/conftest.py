"""Fixtures for the update flow: a registry server on 127.0.0.1, signing keys, the operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission

from tests.updates.registry_server import RegistryServer, SigningKey, new_key, start_registry_server


@pytest.fixture(autouse=True)
def _update_defaults(settings, tmp_path) -> None:
    """Every test starts unsigned, on 1.1.5, stable channel, with its own updates dir."""
    settings.OPENTRACE_REGISTRY_KEYS = {}
    settings.OPENTRACE_VERSION = "1.1.5"
    settings.OPENTRACE_CHANNEL = "stable"
    settings.OPENTRACE_UPDATES_DIR = tmp_path / "updates"
    # The named users' passwords are hashed for every test; the slow hasher adds nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def registry_server(settings) -> Iterator[RegistryServer]:
    server = start_registry_server()
    settings.OPENTRACE_REGISTRY_URL = server.url("/version.json")
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def signing_key(settings) -> SigningKey:
    """A key pair whose public half is pinned in OPENTRACE_REGISTRY_KEYS."""
    key = new_key("k1")
    settings.OPENTRACE_REGISTRY_KEYS = {"k1": key.public_raw}
    return key


def staff_with(django_user_model, username: str, *codenames: str):
    """A staff user holding exactly these `updates` permissions."""
    user = django_user_model.objects.create_user(
        username, f"{username}@example.com", "correct-horse-5", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=codenames, content_type__app_label="updates")
    )
    return user


@pytest.fixture
def history_viewer(django_user_model):
    """Staff who may read the update history (runs, their progress and logs), nothing more."""
    return staff_with(django_user_model, "historian", "view_updaterun")


@pytest.fixture
def checker(django_user_model):
    """Staff who may run "Check now", nothing more."""
    return staff_with(django_user_model, "checker", "check_for_updates")


@pytest.fixture
def operator(django_user_model):
    """Staff with the permission to install (and skip) updates."""
    user = django_user_model.objects.create_user(
        "operator", "operator@example.com", "correct-horse-4", is_staff=True
    )
    permission = Permission.objects.filter(
        codename="install_update", content_type__app_label="updates"
    ).first()
    if permission is not None:
        user.user_permissions.add(permission)
    return user


@pytest.fixture
def agent_online(db):
    """A host agent that sent a heartbeat just now."""
    from updates.models import AgentHeartbeat

    return AgentHeartbeat.record(
        agent_id="docker-host-1",
        agent_version="1.0",
        deployed_version="1.1.5",
        busy=False,
        run_id=None,
        reported_at=None,
    )


@pytest.fixture
def offered(registry_server, db):
    """The registry offers 1.2.0 (pinned to a commit) and a check has recorded it."""
    from tests.updates.registry_server import full_document
    from updates.checking import run_check
    from updates.models import RegistryCheck, RegistryState

    registry_server.serve_json(
        "/version.json",
        full_document(
            {"version": "1.2.0", "severity": "security", "notes": "Fixes", "git_commit": "b" * 40},
            meta_version=7,
        ),
    )
    check = run_check(RegistryCheck.Trigger.SCHEDULED)
    assert check.outcome == "ok", check.error
    return RegistryState.load()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in this process when enqueued, and their errors reach the test."""
    from opentrace.celery import app

    previous = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous
