"""The update flow's actions: every state change that also touches the world outside the database.

`UpdateRun`'s methods are the only writers of `status` and do no file I/O; `updates.trigger`
is the file boundary and knows no model. The functions here join the two in the order that
keeps them consistent, and they are what views, tasks, commands and benchmarks call:

- `request_install`: the refusal rules (`updates.rules`), the run, the trigger file written
  once the transaction commits, the admin log entry.
- `cancel_run`: withdraw the trigger (racing the agent's claim), then the transition and the
  admin log entry.
- `expire_run`: the same for a run no agent claimed in time (the Celery task's unit of work).

A refusal is a `Refused` carrying the sentence the admin page shows.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from updates import rules, trigger
from updates.models import RegistryState, RunAlreadyActive, RunStatus, TransitionRefused, UpdateRun

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The action was not done; `message` says why, in a sentence the admin can act on."""

    def __init__(self, message: str, *, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind  # a `rules.Refusal` kind, when the refusal rules said no

    @property
    def postponable(self) -> bool:
        return self.kind in rules.POSTPONABLE


def request_install(
    *,
    user: AbstractBaseUser | None,
    idempotency_key: str | None = None,
    version: str | None = None,
    document_sha256: str | None = None,
    target: str | None = None,
    again: bool = False,
) -> UpdateRun:
    """Ask the host agent to install the release the registry offers. Returns the run.

    `version` and `document_sha256` are what the admin confirmed; given, the install is
    refused when the offer changed since. `target` installs exactly that release instead (a
    scheduled install's approved version, or a hop of an upgrade path), refused unless it
    is still offered here and within reach. A release that failed or rolled back on this
    install is refused unless `again` (the admin's explicit second confirmation). The same
    `idempotency_key` returns the run it made before (a double submit), with no second log
    entry. `user=None` is a script or command: the run names the system and no admin log
    entry is written (the log needs a user).
    Raises Refused.
    """
    key = idempotency_key or uuid.uuid4().hex
    previous = UpdateRun.objects.filter(idempotency_key=key).first()
    if previous is not None:
        return previous
    state = RegistryState.load()
    refusal = rules.refusal_for(state, version=version, digest=document_sha256, target=target, again=again)
    if refusal is not None:
        raise Refused(refusal.message, kind=refusal.kind)
    release = rules.offered_target(state, target) if target is not None else state.offer().latest
    assert release is not None  # refusal_for refuses when nothing is offered
    try:
        with transaction.atomic():
            run, created = UpdateRun.request(
                user=user,
                from_version=settings.OPENTRACE_VERSION,
                to_version=release.version,
                git_tag=release.git_tag,
                git_commit=release.git_commit,
                severity=release.severity,
                manifest=bytes(state.document or b""),
                manifest_verified=state.verified,
                idempotency_key=key,
            )
            if created:
                run_id = run.pk
                # The agent may act on the file at once: it must never name a run that a
                # rollback of this transaction would take back.
                transaction.on_commit(lambda: _write_trigger(run_id))
                if user is not None:
                    _admin_log(
                        user, run, ADDITION, f"Requested the update {run.from_version} → {run.to_version}."
                    )
    except RunAlreadyActive:
        # Another admin's request won the race between the rules above and the insert.
        raise Refused(
            rules.active_run_refusal() or "Another update is already requested or running."
        ) from None
    return run


def _write_trigger(run_id: uuid.UUID) -> bool:
    """Write the trigger of a run that is still requested (after its transaction committed).

    A failure to write fails the run with the reason, so the admin sees it at once instead
    of waiting for the expiry. Never raises: the request that created the run has committed.
    """
    run = UpdateRun.objects.filter(pk=run_id, status=RunStatus.REQUESTED).first()
    if run is None:
        logger.info("run %s is gone or no longer requested; no trigger written", run_id)
        return False
    try:
        trigger.write(trigger.build(run))
    except Exception as exc:  # whatever stopped the write, the run must not wait for an agent
        logger.exception("could not write the trigger for run %s", run_id)
        try:
            run.mark_finished(RunStatus.FAILED, error=f"Could not write the trigger file: {exc}")
        except Exception:
            logger.exception("could not mark run %s failed", run_id)
        return False
    return True


def cancel_run(run: UpdateRun, *, by: AbstractBaseUser | None, reason: str = "") -> UpdateRun:
    """Withdraw a run no agent has claimed: its trigger is removed, then the run is cancelled.

    `reason`, when given, is what the run records instead of "Cancelled by <admin>." (the
    system cancels a request for a release its publisher withdrew).

    Raises Refused when the run is no longer requested, an agent has claimed it, or the
    trigger cannot be removed (then nothing changed).
    """
    if run.status != RunStatus.REQUESTED:
        status = run.get_status_display().lower()
        raise Refused(f"Only a requested run can be cancelled; this one is {status}.")
    try:
        withdrawal = trigger.withdraw(run.pk)
    except OSError as exc:
        raise Refused(f"The trigger file could not be removed ({exc}).") from None
    if withdrawal is trigger.Withdrawal.CLAIMED:
        raise Refused("An agent has already claimed this run; it can no longer be cancelled.")
    try:
        with transaction.atomic():
            run.cancel(by=by, reason=reason)
            if by is not None:
                _admin_log(by, run, CHANGE, "Cancelled the update before an agent claimed it.")
    except TransitionRefused as exc:
        # It moved on between the check above and the lock (an agent's report won).
        raise Refused(f"{exc.message[:1].upper()}{exc.message[1:]}.") from None
    return run


def expire_run(run_id: uuid.UUID) -> bool:
    """Expire a requested run no agent claimed in time: withdraw its trigger, then expire it.

    False when an agent claimed it or it moved on. Raises OSError when the updates dir cannot
    be read (the run stays requested and expires on a later pass).
    """
    run = UpdateRun.objects.filter(pk=run_id, status=RunStatus.REQUESTED).first()
    if run is None:
        return False
    if trigger.withdraw(run.pk) is trigger.Withdrawal.CLAIMED:
        logger.info("run %s was claimed by an agent; not expiring it", run_id)
        return False
    return run.expire()


def _admin_log(user: AbstractBaseUser, run: UpdateRun, flag: int, message: str) -> None:
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[run], action_flag=flag, change_message=message, single_object=True
    )
