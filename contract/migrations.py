"""What `manage.py migrate_all --state --check-compatible` tells the host agent (SPEC §7, §9).

The agent runs it once, with the new release's code, before `migrate`: the backward-
compatibility checks (django-migration-linter on the unapplied Django migrations, then the
ClickHouse lint), then the state of both databases as one JSON line, the last of its output.
Its exit status tells a refusal from a failure: a release whose migrations fail the checks
is refused (unless its registry entry declares downtime), while any other failure (the
database did not answer) fails the step like any command would.
"""

from __future__ import annotations

INCOMPATIBLE = 3  # exit status: the new migrations are not backward compatible; nothing was changed
STATE_KEYS = frozenset({"django", "clickhouse"})  # the top-level keys of the state line
