"""The update policy (one settings row) and scheduled installs (SPEC §12 "Update policy").

`UpdatePolicy` says whether releases install by themselves (never, security releases only,
or all) and when (the maintenance window, `updates.window`). A `ScheduledInstall` is an
approved release waiting for its time, or being installed hop by hop along an upgrade
path; its methods are the only writers of its `status`. What happens when its time comes
(`actions.request_install`, postponing, the next hop) is `updates.schedule`'s business.

    scheduled ──► installing ──► done
        │   ▲          │
        │   └──────────┤ (the next hop waits for its own request)
        │              └──► stopped    (a hop failed, rolled back, expired or was cancelled)
        └──► cancelled  (an admin withdrew it; or its release was withdrawn)

At most one scheduled install is scheduled or installing at a time (a partial unique index).
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from updates.window import Window

SINGLETON_ID = 1
ALL_DAYS = [0, 1, 2, 3, 4, 5, 6]


def validate_time_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(value)r is not a time zone name like Europe/Berlin or UTC.", params={"value": value}
        ) from None


def validate_days(value: Any) -> None:
    if not isinstance(value, list) or any(
        not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in value
    ):
        raise ValidationError("Days are numbers 0 (Monday) to 6 (Sunday).")


def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(available_timezones())]


class UpdatePolicy(models.Model):
    class Mode(models.TextChoices):
        MANUAL = "manual", "Manual: an admin installs every update"
        SECURITY = "security", "Automatic for security releases (severity security or critical)"
        ALL = "all", "Automatic for all releases"

    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.MANUAL)
    window_days = models.JSONField(
        default=list, blank=True, validators=[validate_days], help_text="0 = Monday … 6 = Sunday."
    )
    window_start = models.TimeField(default=time(3, 0), help_text="Wall-clock time in the time zone below.")
    window_minutes = models.PositiveIntegerField(
        default=120,
        validators=[MinValueValidator(15), MaxValueValidator(24 * 60)],
        help_text="How long the window stays open.",
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "update policy"
        verbose_name_plural = "update policy"
        constraints = [
            models.CheckConstraint(condition=models.Q(id=SINGLETON_ID), name="updatepolicy_singleton")
        ]

    def __str__(self) -> str:
        return "update policy"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = SINGLETON_ID
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> UpdatePolicy:
        try:
            row, _ = cls.objects.get_or_create(pk=SINGLETON_ID, defaults={"window_days": list(ALL_DAYS)})
        except IntegrityError:
            row = cls.objects.get(pk=SINGLETON_ID)
        return row

    @property
    def window(self) -> Window:
        return Window(
            frozenset(self.window_days or []), self.window_start, self.window_minutes, self.time_zone
        )

    def installs_automatically(self, severity: str) -> bool:
        if self.mode == self.Mode.ALL:
            return True
        return self.mode == self.Mode.SECURITY and severity in ("security", "critical")


class ScheduleStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    INSTALLING = "installing", "Installing"
    DONE = "done", "Done"
    STOPPED = "stopped", "Stopped"
    CANCELLED = "cancelled", "Cancelled"


OPEN = (ScheduleStatus.SCHEDULED, ScheduleStatus.INSTALLING)


class ScheduleRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ScheduledInstall(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, choices=ScheduleStatus.choices, default=ScheduleStatus.SCHEDULED)
    target_version = models.CharField(max_length=64, help_text="The approved release.")
    # The releases still to install, in order, the target last ("1.1.8, then 1.2.0").
    hops = models.JSONField(default=list)
    installed_hops = models.JSONField(default=list, blank=True)
    not_before = models.DateTimeField(help_text="When the install may start (a window's opening, or now).")
    in_window = models.BooleanField(default=True, help_text="Only inside the maintenance window.")
    automatic = models.BooleanField(
        default=False, help_text="Scheduled by the update policy, not by an admin."
    )
    again = models.BooleanField(
        default=False, help_text="An admin confirmed installing a release that failed here."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_username = models.CharField(max_length=150, blank=True)
    run = models.ForeignKey(
        "updates.UpdateRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run_ids = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True, help_text="What happened last (postponed, stopped, cancelled).")
    announced_for = models.DateTimeField(null=True, blank=True, help_text="The start the last notice named.")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                models.Value(1),
                condition=models.Q(status__in=["scheduled", "installing"]),
                name="updates_one_open_scheduled_install",
                violation_error_message="Another install is already scheduled.",
            )
        ]

    def __str__(self) -> str:
        return f"{' then '.join(self.hops) or self.target_version} ({self.get_status_display().lower()})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def next_version(self) -> str | None:
        return self.hops[0] if self.hops else None

    @property
    def path_display(self) -> str:
        return ", then ".join([*self.hops]) if self.hops else self.target_version

    @classmethod
    def open(cls) -> ScheduledInstall | None:
        return cls.objects.filter(status__in=OPEN).select_related("run").first()

    @classmethod
    def create(
        cls,
        *,
        target_version: str,
        hops: list[str],
        not_before: datetime,
        in_window: bool,
        automatic: bool,
        again: bool = False,
        user: Any = None,
    ) -> ScheduledInstall:
        """A new scheduled install; raises ScheduleRefused when another one is open."""
        try:
            with transaction.atomic():
                return cls.objects.create(
                    target_version=target_version,
                    hops=list(hops),
                    not_before=not_before,
                    in_window=in_window,
                    automatic=automatic,
                    again=again,
                    requested_by=user,
                    requested_by_username=getattr(user, "username", "") if user is not None else "",
                )
        except IntegrityError:
            other = cls.open()
            raise ScheduleRefused(
                f"Another install is already scheduled ({other}); cancel it first."
            ) from None

    def _locked(self) -> ScheduledInstall:
        return type(self).objects.select_for_update().get(pk=self.pk)

    def _change(self, allowed: tuple[str, ...], **fields: Any) -> bool:
        """Apply `fields` to the locked row when its status is one of `allowed`; False otherwise."""
        with transaction.atomic():
            row = self._locked()
            if row.status not in allowed:
                return False
            for name, value in fields.items():
                setattr(row, name, value)
            row.save(update_fields=list(fields))
        for name in fields:
            setattr(self, name, getattr(row, name))
        self.status = row.status
        return True

    def reschedule(self, not_before: datetime, *, message: str = "", in_window: bool | None = None) -> bool:
        fields: dict[str, Any] = {"not_before": not_before, "message": message}
        if in_window is not None:
            fields["in_window"] = in_window
        return self._change((ScheduleStatus.SCHEDULED,), **fields)

    def wait(self, message: str) -> bool:
        """Its time has come but something else must end first (another update is running)."""
        return self._change((ScheduleStatus.SCHEDULED,), message=message)

    def mark_announced(self, for_start: datetime) -> bool:
        return self._change(OPEN, announced_for=for_start)

    def hop_requested(self, run: Any) -> bool:
        """The next hop's run was requested: the install is under way."""
        return self._change(
            (ScheduleStatus.SCHEDULED,),
            status=ScheduleStatus.INSTALLING,
            run=run,
            run_ids=[*self.run_ids, str(run.pk)],
            message="",
        )

    def hop_succeeded(self, now: datetime) -> bool:
        """The current hop is installed: on to the next one, or done."""
        done, rest = self.hops[:1], self.hops[1:]
        if rest:
            return self._change(
                (ScheduleStatus.INSTALLING,),
                status=ScheduleStatus.SCHEDULED,
                hops=rest,
                installed_hops=[*self.installed_hops, *done],
                not_before=now,
                in_window=False,  # the path is under way: the next hop follows at once
                message=f"{done[0]} installed; {rest[0]} follows.",
            )
        return self._change(
            (ScheduleStatus.INSTALLING,),
            status=ScheduleStatus.DONE,
            hops=[],
            installed_hops=[*self.installed_hops, *done],
            finished_at=now,
            message=f"{self.target_version} installed.",
        )

    def stop(self, message: str, now: datetime) -> bool:
        return self._change(OPEN, status=ScheduleStatus.STOPPED, message=message, finished_at=now)

    def cancel(self, message: str, now: datetime) -> bool:
        """Withdraw it (the caller has cancelled a hop run that was requested, `updates.schedule`)."""
        return self._change(OPEN, status=ScheduleStatus.CANCELLED, message=message, finished_at=now)
