"""The update flow's events, for code outside the run machinery (notices, audit).

Both are sent only after the transaction that caused them commits (`transaction.on_commit`),
so a receiver never sees a state that was rolled back. Receivers must be quick and must not
raise: they enqueue a Celery task with a primary key and return.
"""

from __future__ import annotations

from django.dispatch import Signal

# A registry check found a release newer than the running version that is offered to this
# install. kwargs: version (str), severity (str), notes (str), check_id (int | None)
update_available = Signal()

# An UpdateRun changed status. kwargs: run_id (uuid.UUID), old_status (str), new_status (str)
run_status_changed = Signal()

# A release was scheduled into the next maintenance window (Update policy, SPEC §12).
# kwargs: version (str), scheduled_for (aware datetime). Announced to notification channels
# that get "Scheduled install ahead".
install_scheduled = Signal()
