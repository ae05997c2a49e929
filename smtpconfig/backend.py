"""`EMAIL_BACKEND`: every Django mail (password resets included) goes where the SMTP settings say.

The transport is resolved when a connection opens, i.e. on every `send_mail()`, so a change
saved in the admin applies to the next message without a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from smtpconfig import mailer


class ConfiguredEmailBackend(BaseEmailBackend):
    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self._transport: mailer.Transport | None = None
        self._inner: BaseEmailBackend | None = None

    def open(self) -> bool | None:
        if self._inner is not None:
            return False
        try:
            self._transport = mailer.resolve_transport()
            inner = self._transport.connection(fail_silently=self.fail_silently)
            inner.open()
        except Exception as exc:
            if self.fail_silently:
                return None
            raise mailer.classify(exc, self._transport) from None
        self._inner = inner
        return True

    def close(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        new_connection = self._inner is None
        if new_connection:
            self.open()
        if self._inner is None or self._transport is None:
            return 0  # opening failed silently (fail_silently=True)
        configured_from = self._transport.from_email
        for message in email_messages:
            if configured_from and message.from_email in ("", settings.DEFAULT_FROM_EMAIL):
                message.from_email = configured_from
        try:
            return self._inner.send_messages(email_messages) or 0
        except Exception as exc:
            if self.fail_silently:
                return 0
            raise mailer.classify(exc, self._transport) from None
        finally:
            if new_connection:
                self.close()
