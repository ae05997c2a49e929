"""The kinds of update notices: one vocabulary for the notice log, the webhook body's `event`
and the notices a notification channel chooses to get."""

from __future__ import annotations

from django.db import models


class NoticeKind(models.TextChoices):
    UPDATE_AVAILABLE = "update_available", "New version available"
    SECURITY_RELEASE = "security_release", "Security release available"
    RUN_STARTED = "run_started", "Update started"
    RUN_SUCCEEDED = "run_succeeded", "Update succeeded"
    RUN_FAILED = "run_failed", "Update failed or rolled back"
    INSTALL_SCHEDULED = "install_scheduled", "Scheduled install ahead"


# "Send test" from the admin; no channel subscribes to it, every channel can be sent one.
TEST = "test"

# Severities of the registry document (SPEC §4) that make a new version a security release.
SECURITY_SEVERITIES = frozenset({"security", "critical"})
