"""One registry check, end to end: fetch (outside any transaction), verify, record.

`run_check()` is the single code path behind the scheduled task, "Check now" and
`manage.py check_updates`.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.utils import timezone

from contract.registry import RegistryError, parse_document
from updates import registry
from updates.models import RegistryCheck, RegistryState

logger = logging.getLogger(__name__)


# An admin waiting on "Check now" gets a shorter deadline than the SPEC's 30 s maximum, so
# the request finishes well inside a web worker's timeout.
INTERACTIVE_DEADLINE = 20.0


def run_check(trigger: str) -> RegistryCheck:
    url = settings.OPENTRACE_REGISTRY_URL
    started_at = timezone.now()
    state = RegistryState.load()
    if (
        trigger != RegistryCheck.Trigger.SCHEDULED
        and state.retry_not_before
        and state.retry_not_before > started_at
    ):
        # The registry asked us to slow down; an impatient click must not ignore that.
        error = RegistryError(
            f"the registry asked us to wait until {state.retry_not_before:%Y-%m-%d %H:%M:%S} UTC",
            permanent=False,
        )
        return RegistryState.record_failure(
            trigger=trigger, url=url, started_at=started_at, error=error, count=False
        )
    stored = bytes(state.document) if state.document is not None else None
    try:
        deadline = INTERACTIVE_DEADLINE if trigger == RegistryCheck.Trigger.MANUAL else registry.DEADLINE
        result = registry.fetch(url, etag=state.etag if stored is not None else None, deadline=deadline)
        if result.status == 304:
            if stored is None:
                raise RegistryError("HTTP 304 but no stored document to reuse", permanent=False)
            body = stored
        else:
            assert result.body is not None
            body = result.body
        # Re-parsed on 304 too: the stored copy's expiry and today's pinned keys still apply.
        document = parse_document(
            body,
            keys=settings.OPENTRACE_REGISTRY_KEYS,
            now=timezone.now(),
            highest_meta_version=state.highest_meta_version,
        )
    except RegistryError as exc:
        logger.warning("registry check failed: %s", exc)
        return RegistryState.record_failure(trigger=trigger, url=url, started_at=started_at, error=exc)
    for warning in document.warnings:
        logger.warning("registry document: %s", warning)
    return RegistryState.record_success(
        trigger=trigger,
        url=result.url,
        started_at=started_at,
        http_status=result.status,
        etag=result.etag,
        body=body,
        document=document,
        body_sha256=hashlib.sha256(body).hexdigest(),
    )
