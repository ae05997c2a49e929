"""50 admins press "Install" at once: exactly one run and one trigger file (real PostgreSQL)."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from updates import trigger
from updates.models import RegistryState, UpdateRun

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REQUESTS = 50


def test_50_concurrent_installs_make_one_run_and_one_trigger(operator, offered, agent_online):
    state = RegistryState.load()
    barrier = threading.Barrier(REQUESTS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def press_install(same_key: bool) -> None:
        try:
            client = Client()
            client.force_login(operator)
            form = {
                "version": "1.2.0",
                "document_sha256": state.document_sha256,
                # Half of them double-submit one form, half submit forms of their own.
                "idempotency_key": "0" * 32 if same_key else uuid.uuid4().hex,
            }
            barrier.wait(timeout=30)
            statuses.append(client.post(reverse("updates_install"), form).status_code)
        except BaseException as exc:  # reported below; a thread must not die silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=press_install, args=(i % 2 == 0,)) for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert statuses == [302] * REQUESTS
    run = UpdateRun.objects.get()
    assert run.status == "requested"
    files = [p.name for p in trigger.updates_dir().iterdir()]
    assert files == ["trigger"]
    assert trigger.read()["run_id"] == str(run.pk)
