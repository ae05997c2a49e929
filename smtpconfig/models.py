"""The SMTP settings row (a singleton) and the notice log (mail's, and other senders')."""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.html import escape

from smtpconfig import crypto

SINGLETON_ID = 1
MAIL_CHANNEL = "email"  # the notice log's `channel` for mail
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$|^\[?[0-9A-Fa-f:.]+\]?$")


def validate_host(value: str) -> None:
    if not value:
        return
    if "://" in value or "/" in value:
        raise ValidationError("Enter a host name like smtp.example.com, without a scheme or path.")
    if not _HOSTNAME.match(value) or len(value) > 253:
        raise ValidationError("%(value)r is not a valid host name or IP address.", params={"value": value})


def validate_from_address(value: str) -> None:
    """Accept `ops@example.com` or `OpenTrace <ops@example.com>`; refuse header injection."""
    if not value:
        return
    if any(ch in value for ch in "\r\n\0"):
        raise ValidationError("The from address must be on one line.")
    _name, address = parseaddr(value)
    try:
        validate_email(address)
    except ValidationError:
        raise ValidationError(
            "%(value)r is not an email address (e.g. ops@example.com or OpenTrace <ops@example.com>).",
            params={"value": value},
        ) from None


def parse_recipients(value: str) -> list[str]:
    """Comma-, semicolon- or line-separated addresses; raises ValidationError naming the bad ones."""
    if "\0" in value:
        raise ValidationError("Recipients contain control characters.")
    items = [item.strip() for item in re.split(r"[,;\n\r]+", value) if item.strip()]
    bad = []
    for item in items:
        try:
            validate_email(item)
        except ValidationError:
            bad.append(item)
    if bad:
        raise ValidationError(
            "Not email addresses: %(bad)s", params={"bad": ", ".join(repr(b[:80]) for b in bad)}
        )
    # Keep the operator's order, drop duplicates (case-insensitive).
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            unique.append(item)
    return unique


def validate_recipients(value: str) -> None:
    parse_recipients(value)


class SmtpSettings(models.Model):
    class Security(models.TextChoices):
        NONE = "none", "None (plain SMTP)"
        STARTTLS = "starttls", "STARTTLS"
        TLS = "tls", "Implicit TLS (SMTPS)"

    enabled = models.BooleanField(
        default=False,
        help_text="Send all mail (password resets, notices) through this server. When off, the "
        "EMAIL_URL environment setting is used, or mail is only printed to the log.",
    )
    host = models.CharField(max_length=253, blank=True, validators=[validate_host])
    port = models.PositiveIntegerField(
        default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    security = models.CharField(max_length=16, choices=Security.choices, default=Security.STARTTLS)
    username = models.CharField(max_length=254, blank=True)
    # A Fernet token (see smtpconfig.crypto), never the plaintext.
    password_encrypted = models.TextField(blank=True, editable=False)
    from_address = models.CharField(
        max_length=320,
        blank=True,
        validators=[validate_from_address],
        # The admin renders help texts as HTML.
        help_text=escape("e.g. ops@example.com or OpenTrace <ops@example.com>. Blank: DEFAULT_FROM_EMAIL."),
    )
    timeout = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(300)],
        help_text="Seconds to wait for the server before giving up.",
    )
    recipients = models.TextField(
        blank=True,
        validators=[validate_recipients],
        help_text="Who receives update notices, one address per line or comma-separated. "
        "Blank: every active superuser with an email address.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SMTP configuration"
        verbose_name_plural = "SMTP configuration"
        constraints = [models.CheckConstraint(condition=Q(id=SINGLETON_ID), name="smtpsettings_singleton")]

    def __str__(self) -> str:
        return "SMTP settings"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = SINGLETON_ID
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.enabled and not self.host:
            raise ValidationError({"host": "A host is needed to send mail through this server."})

    @classmethod
    def load(cls) -> SmtpSettings:
        row, _ = cls.objects.get_or_create(pk=SINGLETON_ID)
        return row

    # --- the password -------------------------------------------------------------------
    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_password(self, plaintext: str) -> None:
        self.password_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def clear_password(self) -> None:
        self.password_encrypted = ""

    def get_password(self) -> str:
        """The plaintext password ('' when none); raises crypto.SecretKeyError."""
        if not self.password_encrypted:
            return ""
        return crypto.decrypt(self.password_encrypted)

    def password_problem(self) -> str | None:
        """Why the stored password cannot be used, or None when it can."""
        try:
            self.get_password()
        except crypto.SecretKeyError as exc:
            return str(exc)
        return None

    def rotate_secrets(self) -> bool:
        """Re-encrypt the password under the newest key; True when the row changed."""
        if not self.password_encrypted:
            return False
        rotated = crypto.rotate(self.password_encrypted)
        updated = SmtpSettings.objects.filter(pk=self.pk, password_encrypted=self.password_encrypted).update(
            password_encrypted=rotated
        )
        self.password_encrypted = rotated
        return bool(updated)

    # --- notices ------------------------------------------------------------------------
    def notice_recipients(self) -> list[str]:
        if self.recipients.strip():
            return parse_recipients(self.recipients)
        emails = (
            get_user_model()
            .objects.filter(is_superuser=True, is_active=True)
            .exclude(email="")
            .order_by("pk")
            .values_list("email", flat=True)
        )
        return parse_recipients("\n".join(emails)) if emails else []


class NoticeLog(models.Model):
    """One notice to one recipient. The unique (kind, key, recipient) row is the claim that
    makes a notice go out at most once, however often its sender asks for it.

    `kind`, `key`, and for other transports than mail `recipient` and `channel`, are the
    sender's words (e.g. "run_failed", "<run id>:failed", "channel #3", "Ops webhook");
    this app stores and compares them, and never interprets them. Mail's rows say "email".
    """

    class Status(models.TextChoices):
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to retry"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=32, help_text="What the notice is about, in its sender's words.")
    key = models.CharField(max_length=200, help_text="What makes the notice unique within its kind.")
    recipient = models.CharField(max_length=320)
    channel = models.CharField(
        max_length=120,
        default=MAIL_CHANNEL,
        help_text="How it went out: “email”, or the sender's channel name.",
    )
    subject = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # The Celery task that owns this row: only its retries may send it again.
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "notice log entry"
        verbose_name_plural = "notice log"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key", "recipient"], name="notice_once_per_recipient")
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} → {self.recipient}"

    @classmethod
    def claim(
        cls, *, kind: str, key: str, recipient: str, subject: str, task_id: str, channel: str = MAIL_CHANNEL
    ) -> NoticeLog | None:
        """The row this task may send now, or None when the notice is someone else's or done."""
        now = timezone.now()
        try:
            with transaction.atomic():
                return cls.objects.create(
                    kind=kind,
                    key=key,
                    recipient=recipient,
                    channel=channel[:120],
                    subject=subject[:300],
                    status=cls.Status.SENDING,
                    attempts=1,
                    task_id=task_id,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            pass
        # A retry of the owning task takes its row back; every other caller gets nothing.
        claimed = cls.objects.filter(
            kind=kind, key=key, recipient=recipient, status=cls.Status.RETRYING, task_id=task_id
        ).update(status=cls.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)
        if not claimed:
            return None
        return cls.objects.get(kind=kind, key=key, recipient=recipient)

    def _finish(self, status: str, error: str = "") -> None:
        now = timezone.now()
        fields = {"status": status, "error": error[:4000], "updated_at": now}
        if status == self.Status.SENT:
            fields["sent_at"] = now
        NoticeLog.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)

    def mark_sent(self) -> None:
        self._finish(self.Status.SENT)

    def mark_retrying(self, error: str) -> None:
        self._finish(self.Status.RETRYING, error)

    def mark_failed(self, error: str) -> None:
        self._finish(self.Status.FAILED, error)
