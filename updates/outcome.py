"""What a run came to, in words an admin reads once: a headline sentence, the cause, the rollback.

`describe(run)` is the one wording of an outcome. The System updates page shows `headline`
in its outcome banner with `detail` collapsible under it, the progress endpoint sends the
same (so a reload never changes what the admin reads), and the failure mail puts `cause`
under "Error" and `rollback` under "Rollback".

The agent reports a failure as text (SPEC §6: the failed step's message, and the run's
"rolled_back"/"failed" message `<step> failed: <cause>`); this module only rewords it:
the step name is said once, a command's output is cut to its last line, and repair advice
for a migration the rollback removed (its migrations reverted, or the database restored from
the backup taken before the update) is dropped, since following it would re-apply what the
rollback undid. `readable_steps(run)` words the step table the same way, for the System
updates page and the run's page in Update history alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from updates.models.runs import RunStatus, TimelineStep

if TYPE_CHECKING:
    from updates.models import UpdateRun

SUMMARY_LIMIT = 240

# `python manage.py migrate_all exited with 1: <output tail>` (host_agent.shell.run_command).
_EXITED = re.compile(r"^(?P<command>.+?) exited with (?P<code>-?\d+): ?(?P<tail>.*)$", re.S)
# Repair advice in the ClickHouse migrator's messages (opentrace.clickhouse.migrator).
_REPAIR_ADVICE = re.compile(
    r"\s*(?:—|-)?\s*recorded as failed; fix the cause, then `manage\.py clickhouse_migrate resume [^`]*`"
    r"|\s*Repair: [^\n]*"
)
REJECTED = "trigger rejected: "  # host_agent.agent's prefix for a refused trigger
_ROLLBACK_FAILED = re.compile(r"^(?P<cause>.*?);\s*rollback failed too: (?P<rollback>.*)$", re.S)


@dataclass(frozen=True)
class Outcome:
    headline: str  # one sentence: where the install stands and why
    cause: str  # what failed, one line ("" when nothing failed)
    rollback: str  # what the rollback did ("" when there was none)
    detail: str  # the agent's full text, for the collapsible part
    tone: str  # success | failure | warning | neutral | progress (the banner's colour)


def _strip_step(text: str, step: str) -> str:
    """`migrate failed: X` → `X`, so the step is named once, by the headline."""
    text = text.strip()
    prefix = f"{step} failed: "
    return text[len(prefix) :].strip() if step and text.startswith(prefix) else text


def _meaningful_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("^")]


def summarize(text: str) -> str:
    """One line of an agent's failure text: a command's last output line, not all of it."""
    match = _EXITED.match(text.strip())
    if match:
        lines = _meaningful_lines(match.group("tail"))
        summary = f"{match.group('command')} exited with {match.group('code')}"
        if lines:
            summary = f"{summary}: {lines[-1]}"
    else:
        lines = _meaningful_lines(text)
        if not lines:
            summary = ""
        elif len(lines) == 1 or not lines[0].endswith(":"):
            summary = lines[0]
        else:
            summary = lines[-1]
    summary = summary.rstrip(" .;")
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1].rstrip() + "…"
    return summary


def without_repair_advice(text: str) -> str:
    """`text` without the migrator's repair advice (for a migration the rollback removed)."""
    return _REPAIR_ADVICE.sub("", text).strip()


def rollback_result(rollback_message: str, from_version: str) -> str:
    """What the rollback step did, from its message (`checked out …; database restored from …`)."""
    message = rollback_message.lower()
    serving = f"{from_version} is serving again"
    if "revert" in message and "restored" not in message:
        return f"its migrations were reverted, no data was restored, and {serving}"
    if "database restored" in message:
        return f"the database was restored from the backup taken before the update, and {serving}"
    return f"the previous release ({from_version}) is serving again"


def repair_advice_is_moot(status: str) -> bool:
    """A run that rolled back removed what its failed migration left (reverted, or the database
    restored): advice to resume that migration would re-apply what the rollback undid."""
    return status == RunStatus.ROLLED_BACK


class ReadableStep(TimelineStep):
    summary: str  # the message in one line, for a step table


def readable_steps(run: UpdateRun) -> list[ReadableStep]:
    """The run's step timeline with each message in one line (`summary`) and in full
    (`message`), repair advice that the rollback made moot left out of both."""
    moot = repair_advice_is_moot(run.status)
    steps: list[ReadableStep] = []
    for step in run.step_timeline():
        message = without_repair_advice(step["message"]) if moot else step["message"].strip()
        summary = summarize(message)
        # A one-line message stays as the agent wrote it (summarize drops a final full stop).
        steps.append(
            {**step, "message": message, "summary": message if summary == message.rstrip(" .;") else summary}
        )
    return steps


def describe(run: UpdateRun, *, rollback_message: str = "") -> Outcome:
    """The outcome of `run`; `rollback_message` is its rollback step's message."""
    status = run.status
    src, dst = run.from_version, run.to_version
    step = run.failed_step
    error, rollback_cause = run.error, run.rollback_cause
    if status == RunStatus.REQUESTED:
        return Outcome("Waiting for the host agent to pick up the update.", "", "", "", "neutral")
    if status == RunStatus.RUNNING:
        return Outcome(f"Updating {src} → {dst}…", "", "", "", "progress")
    if status == RunStatus.SUCCEEDED:
        return Outcome(f"Now on {dst} — the update from {src} succeeded.", "", "", "", "success")
    if status == RunStatus.EXPIRED:
        reason = error or "No update agent claimed the update in time."
        return Outcome(f"Not started — {reason} Nothing was changed.", "", "", "", "warning")
    if status == RunStatus.CANCELLED:
        who = (error or "Cancelled.").rstrip(".")
        return Outcome(f"{who} before an agent claimed it; nothing was changed.", "", "", "", "neutral")

    # The agent reports a rollback's cause as `rollback_cause`; an explicit error is more precise.
    raw = error or rollback_cause
    rollback_failure = ""
    failed_too = _ROLLBACK_FAILED.match(raw)
    if failed_too:
        raw, rollback_failure = failed_too.group("cause"), failed_too.group("rollback")
        # `<step> failed (<cause>)` is how the agent says it then.
        raw = re.sub(rf"^{re.escape(step)} failed \((.*)\)$", r"\1", raw.strip(), flags=re.S) if step else raw
    rejected = raw.strip().startswith(REJECTED)
    body = raw.strip()[len(REJECTED) :] if rejected else _strip_step(raw, step)
    if repair_advice_is_moot(status):
        body = without_repair_advice(body)
    cause = summarize(body) or "no reason was reported"
    where = f" at {step}" if step else ""
    detail = body.strip()

    if status == RunStatus.ROLLED_BACK:
        rollback = rollback_result(rollback_message, src)
        headline = f"Still on {src} — {dst} failed{where}: {cause}; {rollback}."
        if rollback_message:
            detail = f"{detail}\n\nRollback: {rollback_message}".strip()
        return Outcome(headline, cause, rollback, detail, "failure")
    if rollback_failure:
        rollback = f"the rollback failed too: {summarize(rollback_failure)}"
        headline = (
            f"{dst} failed{where}: {cause}; {rollback}. The site may need a manual repair (see the log)."
        )
        detail = f"{detail}\n\nRollback: {rollback_failure.strip()}"
        return Outcome(headline, cause, rollback, detail, "failure")
    if rejected:
        headline = f"Still on {src} — the host agent refused the update to {dst}: {cause}."
        return Outcome(headline, cause, "", detail, "failure")
    headline = f"Still on {src} — {dst} failed{where}: {cause}; nothing was changed, {src} kept serving."
    return Outcome(headline, cause, "", detail, "failure")
