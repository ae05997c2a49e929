"""Update runs and their events: the state machine of SPEC §7.

Nothing outside this module assigns `UpdateRun.status`. Every change goes through one
method (`request`, `mark_running`, `record_events`, `mark_finished`, `cancel`, `expire`) that
runs inside `atomic()` with the row locked by `select_for_update()`, and announces the
change with `updates.signals.run_status_changed` once the transaction commits. The methods
touch nothing but the database: the trigger file that goes with a request, a cancel or an
expiry is `updates.actions`' business.

    requested ──► running ──► succeeded | failed | rolled_back
        │
        ├──► failed      (the agent rejected the trigger, or it could not be written)
        ├──► expired     (no agent claimed it within OPENTRACE_TRIGGER_TIMEOUT)
        └──► cancelled   (an admin withdrew it before an agent claimed it)

Terminal states never change. The database allows at most one run that is requested or
running (a partial unique index), whatever the code does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from updates import signals


class RunError(Exception):
    """A run operation the state machine refuses; `seq` names the agent event that asked."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.seq = seq


class TransitionRefused(RunError):
    pass


class RunAlreadyActive(RunError):
    pass


class RunStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE = (RunStatus.REQUESTED, RunStatus.RUNNING)
TERMINAL = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.ROLLED_BACK,
    RunStatus.EXPIRED,
    RunStatus.CANCELLED,
)
ALLOWED: dict[str, set[str]] = {
    RunStatus.REQUESTED: {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.EXPIRED, RunStatus.CANCELLED},
    RunStatus.RUNNING: {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ROLLED_BACK},
}


def _announce(run_id: uuid.UUID, old_status: str, new_status: str) -> None:
    transaction.on_commit(
        lambda: signals.run_status_changed.send(
            sender=UpdateRun, run_id=run_id, old_status=old_status, new_status=new_status
        )
    )


# Who `UpdateRun.request(user=None)` records as the requester (management commands, scripts).
SYSTEM_REQUESTER = "system"

# Every field an agent event may change (see UpdateRun._apply_event).
EVENT_FIELDS = ("status", "started_at", "finished_at", "error", "failed_step", "rollback_cause")


class TimelineStep(TypedDict):
    """One step of a run as its step events tell it (see UpdateRun.step_timeline)."""

    name: str
    state: str  # the latest: started | succeeded | failed | skipped
    started_at: datetime | None
    finished_at: datetime | None
    duration: timedelta | None
    message: str


@dataclass(frozen=True)
class EventIn:
    """One validated event from the agent (see updates.agent_api for the validation)."""

    seq: int
    kind: str  # step | log | run
    step: str = ""
    state: str = ""
    message: str = ""
    lines: list[str] = field(default_factory=list)
    at: datetime | None = None


class UpdateRun(models.Model):
    Status = RunStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    from_version = models.CharField(max_length=64)
    to_version = models.CharField(max_length=64)
    git_tag = models.CharField(max_length=128)
    # NULL means "no commit pinned", which the trigger file carries as JSON null.
    git_commit = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001
    severity = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.REQUESTED, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_username = models.CharField(
        max_length=150, blank=True, help_text="Kept if the user is deleted."
    )
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failed_step = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    rollback_cause = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=64, unique=True)
    # The registry document the release was offered in, exactly as fetched (the trigger's manifest).
    manifest = models.BinaryField()
    manifest_verified = models.BooleanField(default=False)
    last_event_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "update"
        verbose_name_plural = "update history"
        permissions = [("install_update", "Can install updates")]
        constraints = [
            models.UniqueConstraint(
                models.Value(1),
                condition=models.Q(status__in=["requested", "running"]),
                name="updates_one_active_run",
                violation_error_message="Another update is already requested or running.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.from_version} → {self.to_version} ({self.get_status_display().lower()})"

    # --- reading -------------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def outcome(self) -> str:
        """What the run came to, in the one sentence the System updates page shows.

        The one source of this wording (`updates.outcome`): the page renders it and its live
        script shows the same text from the progress endpoint, so a reload never changes
        what the admin reads.
        """
        return self.outcome_parts().headline

    def outcome_parts(self) -> Any:
        """The outcome's headline, cause, rollback result and detail (`updates.outcome.Outcome`)."""
        from updates.outcome import describe

        return describe(self, rollback_message=self.rollback_message())

    def rollback_message(self) -> str:
        """What the agent's rollback step reported when it ended (what it restored), or ""."""
        if self.status != RunStatus.ROLLED_BACK and "rollback" not in (self.error or ""):
            return ""
        event = (
            self.events.filter(kind=UpdateEvent.Kind.STEP, step="rollback")
            .exclude(state="started")
            .order_by("-seq")
            .first()
        )
        return event.message if event else ""

    @classmethod
    def active(cls) -> UpdateRun | None:
        return cls.objects.filter(status__in=ACTIVE).select_related("requested_by").first()

    def step_timeline(self) -> list[TimelineStep]:
        """Each step with its state, start, end and duration, in the order they started."""
        steps: dict[str, TimelineStep] = {}
        for event in self.events.filter(kind=UpdateEvent.Kind.STEP).order_by("seq"):
            entry = steps.setdefault(
                event.step,
                {
                    "name": event.step,
                    "state": "",
                    "started_at": None,
                    "finished_at": None,
                    "duration": None,
                    "message": "",
                },
            )
            entry["state"] = event.state
            if event.message:
                entry["message"] = event.message
            if event.state == "started":
                entry["started_at"] = entry["started_at"] or event.at
            else:
                entry["finished_at"] = event.at
        for entry in steps.values():
            start, end = entry["started_at"], entry["finished_at"]
            entry["duration"] = (end - start) if start and end else None
        return list(steps.values())

    def log_lines(self, tail: int | None = None) -> list[str]:
        events = self.events.filter(kind=UpdateEvent.Kind.LOG).order_by("seq")
        if tail is None:
            return [line for event in events for line in event.lines]
        lines: list[str] = []
        for event in self.events.filter(kind=UpdateEvent.Kind.LOG).order_by("-seq")[:tail]:
            lines[:0] = list(event.lines)
            if len(lines) >= tail:
                break
        return lines[-tail:]

    # --- state changes -------------------------------------------------------------
    @classmethod
    def request(
        cls,
        *,
        user: Any,
        from_version: str,
        to_version: str,
        git_tag: str,
        git_commit: str | None,
        severity: str,
        manifest: bytes,
        manifest_verified: bool,
        idempotency_key: str,
    ) -> tuple[UpdateRun, bool]:
        """Create a requested run (the database row only: `updates.actions.request_install`
        applies the refusal rules and writes the trigger file once this commits).

        Returns (run, created). The same idempotency key returns the run it created before.
        Raises RunAlreadyActive when another run is requested or running.
        """
        existing = cls.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                run = cls.objects.create(
                    from_version=from_version,
                    to_version=to_version,
                    git_tag=git_tag,
                    git_commit=git_commit,
                    severity=severity,
                    requested_by=user,
                    # No user: a script or command asked. The agent needs a non-empty name and the
                    # page must not call it a deleted user, so the run names the system.
                    requested_by_username=getattr(user, "username", "")
                    if user is not None
                    else SYSTEM_REQUESTER,
                    manifest=manifest,
                    manifest_verified=manifest_verified,
                    idempotency_key=idempotency_key,
                )
                _announce(run.pk, "", RunStatus.REQUESTED)
        except IntegrityError:
            existing = cls.objects.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing, False
            active = cls.active()
            raise RunAlreadyActive(
                f"another update ({active}) is already requested or running"
                if active
                else "another update is active"
            ) from None
        return run, True

    def _locked(self) -> UpdateRun:
        # The stored registry document (up to 256 KiB) never changes after the request: a
        # transition neither reads nor rewrites it (saves name their fields).
        return type(self).objects.select_for_update().defer("manifest").get(pk=self.pk)

    def _apply(self, new_status: str, **fields: Any) -> str:
        """Move this (locked) instance to `new_status`; the caller saves. Returns the old status."""
        old = self.status
        if new_status not in ALLOWED.get(old, set()):
            raise TransitionRefused(f"a {old} run cannot become {new_status}")
        self.status = new_status
        for name, value in fields.items():
            setattr(self, name, value)
        _announce(self.pk, old, new_status)
        return old

    def _sync(self, other: UpdateRun) -> None:
        deferred = other.get_deferred_fields()  # reading one would load it from the database
        for f in self._meta.concrete_fields:
            if f.attname not in deferred:
                setattr(self, f.attname, getattr(other, f.attname))

    def mark_running(self, at: datetime | None = None) -> None:
        with transaction.atomic():
            run = self._locked()
            run._apply(RunStatus.RUNNING, started_at=at or timezone.now())
            run.save(update_fields=["status", "started_at"])
        self._sync(run)

    def mark_finished(
        self,
        status: str,
        *,
        error: str = "",
        failed_step: str = "",
        rollback_cause: str = "",
        at: datetime | None = None,
    ) -> None:
        if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ROLLED_BACK):
            raise TransitionRefused(f"{status} is not an outcome")
        with transaction.atomic():
            run = self._locked()
            fields: dict[str, Any] = {"finished_at": at or timezone.now()}
            if error:
                fields["error"] = error
            if failed_step:
                fields["failed_step"] = failed_step
            if rollback_cause:
                fields["rollback_cause"] = rollback_cause
            run._apply(status, **fields)
            run.save(update_fields=["status", *fields])
        self._sync(run)

    def cancel(self, *, by: Any = None, reason: str = "") -> None:
        """Cancel a requested run. The caller has withdrawn its trigger first, so that no
        agent can still claim it (`updates.actions.cancel_run`)."""
        if self.status != RunStatus.REQUESTED:
            raise TransitionRefused(f"only a requested run can be cancelled; this one is {self.status}")
        who = getattr(by, "username", "") or "an admin"
        with transaction.atomic():
            run = self._locked()
            run._apply(
                RunStatus.CANCELLED, finished_at=timezone.now(), error=reason or f"Cancelled by {who}."
            )
            run.save(update_fields=["status", "finished_at", "error"])
        self._sync(run)

    def expire(self) -> bool:
        """Expire a requested run no agent claimed in time; False when it is no longer requested.
        The caller has withdrawn its trigger first (`updates.actions.expire_run`)."""
        timeout = settings.OPENTRACE_TRIGGER_TIMEOUT
        with transaction.atomic():
            run = self._locked()
            if run.status != RunStatus.REQUESTED:
                return False
            run._apply(
                RunStatus.EXPIRED,
                finished_at=timezone.now(),
                error=f"No update agent claimed the update within {timeout} s. Is the host agent running?",
            )
            run.save(update_fields=["status", "finished_at", "error"])
        self._sync(run)
        return True

    def record_events(self, events: Iterable[EventIn]) -> tuple[int, int]:
        """Store a batch of agent events and apply the transitions they carry.

        All or nothing: a transition the state machine forbids raises TransitionRefused
        (naming the event's seq) and nothing of the batch is kept. An event whose seq is
        already stored is a duplicate: acknowledged, nothing changes. Returns
        (accepted, duplicates).
        """
        events = list(events)
        with transaction.atomic():
            run = self._locked()
            known = set(run.events.filter(seq__in=[e.seq for e in events]).values_list("seq", flat=True))
            fresh: list[UpdateEvent] = []
            duplicates = 0
            now = timezone.now()
            for event in events:
                if event.seq in known:
                    duplicates += 1
                    continue
                known.add(event.seq)
                if run.is_terminal:
                    raise TransitionRefused(f"the run is already {run.status}", seq=event.seq)
                at = event.at or now
                try:
                    run._apply_event(event, at)
                except TransitionRefused as exc:
                    raise TransitionRefused(exc.message, seq=event.seq) from None
                fresh.append(
                    UpdateEvent(
                        run=run,
                        seq=event.seq,
                        kind=event.kind,
                        step=event.step,
                        state=event.state,
                        message=event.message,
                        lines=event.lines,
                        at=at,
                    )
                )
            if fresh:
                UpdateEvent.objects.bulk_create(fresh)
                run.last_event_at = now
                run.save(update_fields=[*EVENT_FIELDS, "last_event_at"])
        self._sync(run)
        return len(fresh), duplicates

    def _apply_event(self, event: EventIn, at: datetime) -> None:
        if event.kind != UpdateEvent.Kind.RUN:
            if self.status == RunStatus.REQUESTED:
                # Progress from the agent means it claimed the trigger, even if its
                # "running" event is still in its outbox.
                self._apply(RunStatus.RUNNING, started_at=at)
            if event.kind == UpdateEvent.Kind.STEP and event.state == "failed" and not self.failed_step:
                # The first failure is the cause; a failing rollback shows in the timeline.
                self.failed_step = event.step
            return
        if event.state == RunStatus.RUNNING:
            if self.status == RunStatus.RUNNING:
                return  # said twice: nothing to change
            self._apply(RunStatus.RUNNING, started_at=at)
        elif event.state == RunStatus.SUCCEEDED:
            self._apply(RunStatus.SUCCEEDED, finished_at=at)
        elif event.state == RunStatus.FAILED:
            self._apply(
                RunStatus.FAILED, finished_at=at, error=event.message or self.error or "The update failed."
            )
        elif event.state == RunStatus.ROLLED_BACK:
            self._apply(
                RunStatus.ROLLED_BACK, finished_at=at, rollback_cause=event.message or self.rollback_cause
            )
        else:
            raise TransitionRefused(f"unknown run state {event.state!r}")


class UpdateEvent(models.Model):
    class Kind(models.TextChoices):
        STEP = "step", "Step"
        LOG = "log", "Log"
        RUN = "run", "Run"

    run = models.ForeignKey(UpdateRun, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    step = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, blank=True)
    message = models.TextField(blank=True)
    lines = models.JSONField(default=list, blank=True)
    at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="updates_event_seq_unique")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} {self.step} {self.state}".strip()
