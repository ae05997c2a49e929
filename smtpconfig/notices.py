"""Delivering one notice to its recipients, at most once each, recorded in the NoticeLog.

A notice (kind, key) goes to every recipient of the SMTP settings. For each recipient the
caller first claims the unique (kind, key, recipient) log row; only the task that created
the row (and its own retries) may send it, so however often the sender asks for the same
notice, each recipient gets one mail. What a kind or a key means is the sender's business
(such as the update notices); this module only compares them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.mail import EmailMultiAlternatives

from smtpconfig import mailer
from smtpconfig.models import NoticeLog, SmtpSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    kind: str  # the sender's name for this kind of notice, e.g. "update_available"
    key: str  # what makes it unique for a recipient within its kind, e.g. a version
    subject: str
    text: str
    html: str


@dataclass
class Delivery:
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already sent or owned by another task
    retry: list[str] = field(default_factory=list)  # transient failure: the task should retry
    failed: list[str] = field(default_factory=list)  # permanent failure, or out of retries
    no_transport: bool = False

    @property
    def should_retry(self) -> bool:
        return bool(self.retry)


def deliver(notice: Notice, *, task_id: str, final_attempt: bool) -> Delivery:
    """Send `notice` to every recipient this task may still send it to.

    Transient failures leave the row RETRYING for this task's next attempt, unless
    `final_attempt`, when they become FAILED like permanent ones.
    """
    delivery = Delivery()
    transport: mailer.Transport | None
    try:
        transport = mailer.resolve_transport()
    except mailer.MailError as exc:
        # The enabled SMTP row is unusable (e.g. its password's key is gone): record it
        # against every recipient so the admin's notice log shows why nothing arrived.
        transport = None
        setup_error: mailer.MailError | None = exc
    else:
        setup_error = None
        if transport.is_console:
            logger.info("No SMTP server configured; notice %s %s not sent", notice.kind, notice.key)
            delivery.no_transport = True
            return delivery

    recipients = SmtpSettings.load().notice_recipients()
    if not recipients:
        logger.warning(
            "Notice %s %s has no recipients: set them in the SMTP configuration, or give a "
            "superuser an email address",
            notice.kind,
            notice.key,
        )
    for recipient in recipients:
        row = NoticeLog.claim(
            kind=notice.kind, key=notice.key, recipient=recipient, subject=notice.subject, task_id=task_id
        )
        if row is None:
            delivery.skipped.append(recipient)
            continue
        try:
            if setup_error is not None:
                raise setup_error
            message = EmailMultiAlternatives(subject=notice.subject, body=notice.text, to=[recipient])
            message.attach_alternative(notice.html, "text/html")
            mailer.send(message, transport)
        except mailer.MailError as exc:
            if exc.permanent or final_attempt:
                row.mark_failed(f"{exc.kind}: {exc}")
                delivery.failed.append(recipient)
            else:
                row.mark_retrying(f"{exc.kind}: {exc}")
                delivery.retry.append(recipient)
            logger.warning("Notice %s %s to %s: %s (%s)", notice.kind, notice.key, recipient, exc, exc.kind)
        else:
            row.mark_sent()
            delivery.sent.append(recipient)
    return delivery
