"""A notification channel: where update notices go besides email, and which ones."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from smtpconfig import crypto
from updates.notice_kinds import NoticeKind

SECRET_BYTES = 32
MAX_ERROR_CHARS = 1000


def validate_kinds(value: Any) -> None:
    known = set(NoticeKind.values)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Notices must be a list of notice names.")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValidationError("Unknown notices: %(unknown)s", params={"unknown": ", ".join(unknown)})


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (signed JSON POST)"
        APPRISE = "apprise", "Chat service (Apprise URL)"

    class Outcome(models.TextChoices):
        NONE = "", "Nothing sent yet"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WEBHOOK)
    notices = models.JSONField(default=list, blank=True, validators=[validate_kinds])
    # Fernet tokens (smtpconfig.crypto, the SMTP password's keys): both can hold credentials.
    url_encrypted = models.TextField(editable=False)
    secret_encrypted = models.TextField(blank=True, editable=False)  # webhooks: the signing secret
    # What pages may show of the URL: a webhook's scheme and host, an Apprise URL's scheme.
    url_hint = models.CharField(max_length=300, blank=True, editable=False)
    # SPEC §10: a channel's failure is recorded on the channel.
    last_outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, editable=False)
    last_outcome_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "updates"
        verbose_name = "notification channel"
        verbose_name_plural = "notification channels"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.name.strip().lower() == "email":
            # The notice log calls mail "email"; a channel of that name would read as mail.
            raise ValidationError({"name": "“email” names the mail notices; choose another name."})

    # --- what it gets ----------------------------------------------------------------------
    def gets(self, kind: str) -> bool:
        """Whether this channel gets notices of `kind`. A security release is also a new
        version: a channel that gets every new version gets it too."""
        wanted = set(self.notices)
        if kind == NoticeKind.SECURITY_RELEASE and NoticeKind.UPDATE_AVAILABLE in wanted:
            return True
        return kind in wanted

    @classmethod
    def getting(cls, kind: str) -> list[int]:
        """Ids of the enabled channels that get `kind` (filtered here: few rows, and JSON
        lookups differ between SQLite and PostgreSQL)."""
        return [
            channel.pk for channel in cls.objects.filter(enabled=True).order_by("pk") if channel.gets(kind)
        ]

    @property
    def log_recipient(self) -> str:
        """The notice log's recipient for this channel: stable across renames, never an
        email address, so it cannot collide with a mail row."""
        return f"channel #{self.pk}"

    # --- the secrets -------------------------------------------------------------------------
    @property
    def has_url(self) -> bool:
        return bool(self.url_encrypted)

    def set_url(self, url: str, hint: str) -> None:
        self.url_encrypted = crypto.encrypt(url)
        self.url_hint = hint[:300]

    def get_url(self) -> str:
        """The plaintext URL; raises crypto.SecretKeyError."""
        return crypto.decrypt(self.url_encrypted)

    def new_secret(self) -> str:
        """Generate and store a new signing secret; the plaintext is returned to show once."""
        secret = secrets.token_urlsafe(SECRET_BYTES)
        self.secret_encrypted = crypto.encrypt(secret)
        return secret

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    def secret_problem(self) -> str | None:
        """Why a stored secret cannot be decrypted, or None."""
        try:
            self.get_url()
            self.get_secret()
        except crypto.SecretKeyError as exc:
            return str(exc)
        return None

    @classmethod
    def rotate_all_secrets(cls) -> tuple[int, int, list[str]]:
        """Re-encrypt every channel's URL and secret under the newest key (`rotate_secrets`):
        (rows changed, rows unchanged, problems naming the channels left as they were)."""
        rotated = unchanged = 0
        problems: list[str] = []
        for channel in cls.objects.order_by("pk"):
            try:
                url = crypto.rotate(channel.url_encrypted) if channel.url_encrypted else ""
                secret = crypto.rotate(channel.secret_encrypted) if channel.secret_encrypted else ""
            except crypto.SecretKeyError as exc:
                problems.append(f"notification channel “{channel.name}”: {exc}")
                continue
            if not url and not secret:
                unchanged += 1
                continue
            # Only if nobody changed them meanwhile: a newer value is already under the newest key.
            updated = cls.objects.filter(
                pk=channel.pk, url_encrypted=channel.url_encrypted, secret_encrypted=channel.secret_encrypted
            ).update(url_encrypted=url, secret_encrypted=secret)
            rotated += updated
            unchanged += 1 - updated
        return rotated, unchanged, problems

    # --- what happened -------------------------------------------------------------------------
    def record_outcome(self, outcome: str, error: str = "") -> None:
        now = timezone.now()
        fields = {"last_outcome": outcome, "last_outcome_at": now, "last_error": error[:MAX_ERROR_CHARS]}
        NotificationChannel.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)
