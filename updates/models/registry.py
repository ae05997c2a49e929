"""What the registry told us: one row per check, and one row of current state.

`RegistryState` (a single row) owns every change to the registry information: a check's
outcome is recorded by `record_success()` / `record_failure()`, skipping by `skip()` /
`unskip()`. The check itself (HTTP, parsing) happens outside any transaction, in
`updates.checking.run_check()`.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from contract.offer import Offer, select_offer
from contract.registry import Document, RegistryError, Release, parse_version
from contract.rollout import bucket
from updates import signals

CHECK_HISTORY = 100  # checks kept; older rows are deleted after each check
STALE_AFTER_FAILURES = 3
MIN_RETRY_SECONDS = 30.0
CLAIM_SECONDS = 120  # a scheduled check in progress holds the slot this long


class RegistryCheck(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok", "Accepted"
        NOT_MODIFIED = "not_modified", "Not modified (stored copy re-checked)"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        MANUAL = "manual", "Check now"
        COMMAND = "command", "manage.py check_updates"

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    url = models.CharField(max_length=2048)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    permanent = models.BooleanField(default=False, help_text="Retrying soon would not help.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    etag = models.CharField(max_length=512, blank=True)
    # The raw accepted body, exactly as fetched (a trigger's `manifest` is built from it).
    body = models.BinaryField(null=True, blank=True)
    meta_version = models.BigIntegerField(null=True, blank=True)
    verified = models.BooleanField(default=False)
    latest_version = models.CharField(max_length=64, blank=True)
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        # "Check now" on System updates (superusers have it; so does whoever may install).
        permissions = [("check_for_updates", "Can check for updates now")]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"check {self.started_at:%Y-%m-%d %H:%M} {self.outcome}"


@dataclass(frozen=True)
class Staleness:
    stale: bool
    since: datetime | None
    reason: str


class RegistryState(models.Model):
    """The single row holding what we currently believe the registry offers."""

    SINGLETON = 1

    offset_seconds = models.FloatField(help_text="This install's random place in the check interval.")
    next_check_at = models.DateTimeField(null=True, blank=True)
    retry_not_before = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_check = models.ForeignKey(
        RegistryCheck, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_success_at = models.DateTimeField(null=True, blank=True)
    etag = models.CharField(max_length=512, blank=True)
    document = models.BinaryField(null=True, blank=True)
    document_sha256 = models.CharField(max_length=64, blank=True)
    highest_meta_version = models.BigIntegerField(null=True, blank=True)
    verified = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    releases = models.JSONField(default=list, blank=True)
    skipped_versions = models.JSONField(default=list, blank=True)
    # Generated once (by `load()`, the first time it finds none); this install's rollout
    # bucket derives from it (contract.rollout). Nullable so that the release before it,
    # still serving while this one migrates, can write the row (expand-only, SPEC §7).
    install_id = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "registry state"

    def __str__(self) -> str:
        return "registry state"

    # --- reading -------------------------------------------------------------------
    @classmethod
    def load(cls) -> RegistryState:
        try:
            state, _ = cls.objects.get_or_create(
                pk=cls.SINGLETON,
                defaults={"offset_seconds": random.uniform(0, settings.OPENTRACE_UPDATE_CHECK_INTERVAL)},
            )
        except IntegrityError:  # two processes created the row at once; the other one won
            state = cls.objects.get(pk=cls.SINGLETON)
        if state.install_id is None:
            # A conditional UPDATE: two processes generating one at once keep the first.
            cls.objects.filter(pk=state.pk, install_id__isnull=True).update(install_id=uuid.uuid4())
            state.install_id = cls.objects.values_list("install_id", flat=True).get(pk=state.pk)
        return state

    def release_list(self) -> list[Release]:
        return [Release.from_json(item) for item in self.releases]

    def offer(self, running: str | None = None) -> Offer:
        return select_offer(
            self.release_list(),
            running=running or settings.OPENTRACE_VERSION,
            channel=settings.OPENTRACE_CHANNEL,
            skipped=self.skipped_versions,
            bucket=self.rollout_bucket,
        )

    @property
    def rollout_bucket(self) -> int:
        return bucket(str(self.install_id))

    def running_release(self, running: str | None = None) -> Release | None:
        """The registry's entry for the running version, when the document lists it."""
        wanted = parse_version(running or settings.OPENTRACE_VERSION)
        return next((r for r in self.release_list() if r.parsed_version == wanted), None)

    def staleness(self, now: datetime | None = None) -> Staleness:
        now = now or timezone.now()
        if self.expires_at is not None and self.expires_at <= now:
            return Staleness(True, self.expires_at, "the registry document has expired")
        interval = timedelta(seconds=settings.OPENTRACE_UPDATE_CHECK_INTERVAL)
        if self.consecutive_failures >= STALE_AFTER_FAILURES:
            return Staleness(True, self.last_success_at, "checks keep failing")
        if self.last_success_at is not None and now - self.last_success_at > 3 * interval:
            return Staleness(True, self.last_success_at, "no successful check for a long time")
        return Staleness(False, None, "")

    def next_slot(self, now: datetime) -> datetime:
        """The next scheduled check: interval-spaced slots shifted by this install's offset."""
        interval = settings.OPENTRACE_UPDATE_CHECK_INTERVAL
        offset = self.offset_seconds % interval
        ts = now.timestamp()
        slot = math.floor((ts - offset) / interval + 1) * interval + offset
        return datetime.fromtimestamp(slot, tz=now.tzinfo)

    # --- state changes -------------------------------------------------------------
    @classmethod
    def claim_scheduled_check(cls, now: datetime | None = None) -> bool:
        """Take the due slot with a conditional UPDATE, so two workers never both check."""
        now = now or timezone.now()
        cls.load()
        claimed = (
            cls.objects.filter(pk=cls.SINGLETON)
            .filter(models.Q(next_check_at__isnull=True) | models.Q(next_check_at__lte=now))
            .update(next_check_at=now + timedelta(seconds=CLAIM_SECONDS))
        )
        return claimed == 1

    @classmethod
    def record_success(
        cls,
        *,
        trigger: str,
        url: str,
        started_at: datetime,
        http_status: int,
        etag: str | None,
        body: bytes,
        document: Document,
        body_sha256: str,
    ) -> RegistryCheck:
        now = timezone.now()
        with transaction.atomic():
            state = cls.objects.select_for_update().get(pk=cls.load().pk)
            state.releases = [r.to_json() for r in document.releases]
            offer = state.offer()
            check = RegistryCheck.objects.create(
                started_at=started_at,
                finished_at=now,
                trigger=trigger,
                url=url[:2048],
                outcome=RegistryCheck.Outcome.NOT_MODIFIED
                if http_status == 304
                else RegistryCheck.Outcome.OK,
                http_status=http_status,
                etag=(etag or "")[:512],
                body=body,
                meta_version=document.meta_version,
                verified=document.verified,
                latest_version=offer.latest.version if offer.latest else "",
                warnings=list(document.warnings),
            )
            state.last_check = check
            state.last_success_at = now
            state.consecutive_failures = 0
            state.retry_not_before = None
            state.etag = (etag or "")[:512]
            state.document = body
            state.document_sha256 = body_sha256
            if document.meta_version is not None:
                state.highest_meta_version = max(state.highest_meta_version or 0, document.meta_version)
            state.verified = document.verified
            state.expires_at = document.expires
            state.next_check_at = state.next_slot(now)
            state.save()
            _prune_checks()
            if offer.update_available:
                latest = offer.latest
                assert latest is not None
                transaction.on_commit(
                    lambda: signals.update_available.send(
                        sender=RegistryState,
                        version=latest.version,
                        severity=latest.severity,
                        notes=latest.notes,
                        check_id=check.pk,
                    )
                )
        return check

    @classmethod
    def record_failure(
        cls, *, trigger: str, url: str, started_at: datetime, error: RegistryError, count: bool = True
    ) -> RegistryCheck:
        """Record a failed check; the last good result stays in place."""
        now = timezone.now()
        with transaction.atomic():
            state = cls.objects.select_for_update().get(pk=cls.load().pk)
            check = RegistryCheck.objects.create(
                started_at=started_at,
                finished_at=now,
                trigger=trigger,
                url=url[:2048],
                outcome=RegistryCheck.Outcome.FAILED,
                error=str(error)[:4000],
                permanent=error.permanent,
                http_status=error.http_status,
            )
            state.last_check = check
            if count:
                state.consecutive_failures += 1
                if error.retry_after is not None:
                    wait = max(error.retry_after, MIN_RETRY_SECONDS)
                    state.retry_not_before = now + timedelta(seconds=wait)
                    state.next_check_at = state.retry_not_before
                elif error.permanent:
                    # Asking again in a minute would get the same answer: wait for the next slot.
                    state.next_check_at = state.next_slot(now)
                else:
                    wait = registry_backoff(state.consecutive_failures)
                    state.next_check_at = min(now + timedelta(seconds=wait), state.next_slot(now))
            state.save()
            _prune_checks()
        return check

    def skip(self, version: str) -> None:
        self._set_skipped(version, skip=True)

    def unskip(self, version: str) -> None:
        self._set_skipped(version, skip=False)

    def _set_skipped(self, version: str, *, skip: bool) -> None:
        wanted = parse_version(version)
        if wanted is None:
            raise ValueError(f"{version!r} is not a version")
        with transaction.atomic():
            state = type(self).objects.select_for_update().get(pk=self.pk)
            kept = [v for v in state.skipped_versions if parse_version(v) != wanted]
            if skip:
                kept.append(str(version).lstrip("vV"))
            state.skipped_versions = kept[-50:]
            state.save(update_fields=["skipped_versions"])
        self.skipped_versions = state.skipped_versions


def registry_backoff(failures: int) -> float:
    from updates.registry import backoff_delay

    cap = float(settings.OPENTRACE_UPDATE_CHECK_INTERVAL)
    return max(MIN_RETRY_SECONDS, backoff_delay(failures, base=60.0, cap=cap))


def _prune_checks() -> None:
    keep = list(
        RegistryCheck.objects.order_by("-started_at", "-id").values_list("pk", flat=True)[:CHECK_HISTORY]
    )
    if len(keep) >= CHECK_HISTORY:
        RegistryCheck.objects.exclude(pk__in=keep).exclude(
            pk__in=RegistryState.objects.values("last_check")
        ).delete()
