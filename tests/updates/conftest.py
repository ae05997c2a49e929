"""Fixtures for the update flow: a registry server on 127.0.0.1, signing keys, the operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission

from testing.beat import eager_celery
from testing.policies import heartbeat, offer, update_defaults
from testing.registry_server import RegistryServer, SigningKey, new_key, serving_registry


@pytest.fixture(autouse=True)
def _update_defaults(settings, tmp_path) -> None:
    """Every test starts unsigned, on 1.1.5, stable channel, with its own updates dir."""
    update_defaults(settings, tmp_path / "updates")
    # The named users' passwords are hashed for every test; the slow hasher adds nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def registry_server(settings) -> Iterator[RegistryServer]:
    with serving_registry(settings) as server:
        yield server


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
    return heartbeat()


@pytest.fixture
def offered(registry_server, db):
    """The registry offers 1.2.0 (pinned to a commit) and a check has recorded it."""
    return offer(registry_server)


@pytest.fixture
def eager_tasks():
    """Celery tasks run in this process when enqueued, and their errors reach the test."""
    with eager_celery(propagate=True) as app:
        yield app
