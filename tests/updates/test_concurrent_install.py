"""One active run at a time, enforced by PostgreSQL itself (SPEC §7), not by the view's check.

The view refuses an install when a run is already active; that check alone cannot stop two
requests that both pass it before either has inserted its run. These tests make exactly that
happen, so they pass only because the partial unique index `updates_one_active_run` refuses
the second insert.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from testing.factories import run_fields
from updates import trigger
from updates.models import RegistryState, RunAlreadyActive, UpdateRun
from updates.models.runs import ACTIVE

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REQUESTS = 50


def request_run(**overrides):
    return UpdateRun.request(**run_fields(**overrides))


def test_50_concurrent_installs_make_one_run_and_one_trigger(operator, offered, agent_online, monkeypatch):
    state = RegistryState.load()
    past_the_check = threading.Barrier(REQUESTS)
    statuses: list[int] = []
    errors: list[BaseException] = []
    original = UpdateRun.request

    def request_together(cls, **values):
        # Every request has passed the view's own "is a run active?" check before any inserts.
        past_the_check.wait(timeout=30)
        return original(**values)

    monkeypatch.setattr(UpdateRun, "request", classmethod(request_together))

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
    assert UpdateRun.objects.filter(status__in=ACTIVE).count() == 1
    run = UpdateRun.objects.get()
    assert run.status == "requested"
    files = sorted(p.name for p in trigger.updates_dir().iterdir())
    assert files == ["issued", "trigger"]
    assert [p.name for p in trigger.issued_path(run.pk).parent.iterdir()] == [str(run.pk)]
    assert trigger.read()["run_id"] == str(run.pk)


def waits_on_a_lock(thread: threading.Thread, polls: int = 2000) -> bool:
    with connection.cursor() as cursor:
        for _ in range(polls):
            if not thread.is_alive():
                return False
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.005)
    return False


def test_a_request_while_another_transaction_holds_an_uncommitted_run_waits_and_is_refused():
    inserted, finish_first = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                outcome["first"] = request_run()[0].pk
                inserted.set()
                finish_first.wait(timeout=30)
        finally:
            connection.close()

    def second() -> None:
        try:
            outcome["second"] = request_run()[0].pk
        except RunAlreadyActive as exc:
            outcome["second"] = exc
        finally:
            connection.close()

    holder = threading.Thread(target=first)
    holder.start()
    assert inserted.wait(timeout=30)
    contender = threading.Thread(target=second)
    contender.start()
    # Nothing of the first run is visible to the second transaction yet; only the index knows,
    # so PostgreSQL makes the second insert wait on the first transaction's lock. Asked of
    # PostgreSQL, not inferred from a timed join (a timed wait is also what a shifted clock
    # cannot do: libfaketime moves the monotonic deadline a year ahead).
    blocked = waits_on_a_lock(contender)
    finish_first.set()
    holder.join(timeout=30)
    contender.join(timeout=30)

    assert blocked, f"the second request did not wait for the first transaction: {outcome}"
    assert isinstance(outcome["second"], RunAlreadyActive)
    assert list(UpdateRun.objects.filter(status__in=ACTIVE).values_list("pk", flat=True)) == [
        outcome["first"]
    ]
