"""Sending one message to one channel, at most once, recorded in the notice log.

The notice log row (smtpconfig's `NoticeLog`: kind, key, recipient unique) is the claim,
exactly as for mail: the recipient is `channel #<id>`, the `channel` column the channel's
name. Only the task that created the row, and its own retries, may send it. Outcomes are
recorded on the row and on the channel; this module never raises for a failed delivery.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

from django.conf import settings

from smtpconfig import crypto
from smtpconfig.models import NoticeLog
from updates.channels import chat, masking, messages, webhook
from updates.channels.errors import DeliveryError
from updates.channels.messages import ChannelMessage
from updates.channels.models import NotificationChannel

logger = logging.getLogger(__name__)

SENT = "sent"
SKIPPED = "skipped"  # already sent, or another task's
RETRY = "retry"  # a transient failure: the task should retry
FAILED = "failed"  # a permanent failure, or out of retries


@dataclass(frozen=True)
class Result:
    outcome: str  # SENT, SKIPPED, RETRY or FAILED
    detail: str = ""  # what the receiver said, or the error (masked)


@dataclass(frozen=True)
class TestResult:
    ok: bool
    sentence: str


def encode(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def transmit(channel: NotificationChannel, message: ChannelMessage) -> str:
    """Send `message` now; what the receiver said on success, else DeliveryError."""
    try:
        url = channel.get_url()
        secret = channel.get_secret()
    except crypto.SecretKeyError:
        raise DeliveryError(
            "its stored URL or secret cannot be decrypted with any key in OPENTRACE_SECRETS_KEY "
            "(restore the old key, or enter the URL again and generate a new secret)",
            permanent=True,
        ) from None
    if channel.kind == NotificationChannel.Kind.WEBHOOK:
        if not secret:
            raise DeliveryError("the channel has no signing secret: generate one", permanent=True)
        headers = {
            "User-Agent": f"OpenTrace-webhook/{settings.OPENTRACE_VERSION}",
            webhook.EVENT_HEADER: message.event,
            webhook.DELIVERY_HEADER: message.body["notice_id"],
        }
        status = webhook.post(url, encode(message.body), secret, headers=headers)
        return f"{webhook.where(url)} answered {status}"
    service = chat.send(url, title=message.title, body=message.text, notify_type=message.notify_type)
    return f"{service} accepted it"


def _error_text(channel: NotificationChannel, exc: DeliveryError) -> str:
    # The transports keep secrets out of their messages; masking again costs little. A
    # webhook's errors name its scheme and host on purpose: only the whole URL is masked.
    try:
        url = channel.get_url()
    except crypto.SecretKeyError:
        return str(exc)
    pieces = masking.pieces_of(url) if channel.kind == NotificationChannel.Kind.APPRISE else (url,)
    return masking.mask(str(exc), pieces)


def deliver(
    channel: NotificationChannel, message: ChannelMessage, *, task_id: str, final_attempt: bool
) -> Result:
    """Transient failures leave the row waiting for this task's next attempt (RETRY), unless
    `final_attempt`, when they fail like permanent ones."""
    row = NoticeLog.claim(
        kind=message.event,
        key=message.key,
        recipient=channel.log_recipient,
        subject=message.title,
        task_id=task_id,
        channel=channel.name,
    )
    if row is None:
        return Result(SKIPPED)
    try:
        said = transmit(channel, message)
    except DeliveryError as exc:
        error = _error_text(channel, exc)
        channel.record_outcome(NotificationChannel.Outcome.FAILED, error)
        logger.warning("Notice %s %s to channel %s: %s", message.event, message.key, channel.pk, error)
        if exc.permanent or final_attempt:
            row.mark_failed(error)
            return Result(FAILED, error)
        row.mark_retrying(error)
        return Result(RETRY, error)
    row.mark_sent()
    channel.record_outcome(NotificationChannel.Outcome.SENT)
    return Result(SENT, said)


def send_test(channel: NotificationChannel) -> TestResult:
    """ "Send test" in the admin: a test notice now, in the notice log like any other."""
    result = deliver(
        channel, messages.test(channel.name), task_id=f"test-{uuid.uuid4().hex}", final_attempt=True
    )
    if result.outcome == SENT:
        return TestResult(True, f"Test notice sent to “{channel.name}”: {result.detail}.")
    return TestResult(False, f"Test notice to “{channel.name}” failed: {result.detail}.")
