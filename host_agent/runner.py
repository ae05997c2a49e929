"""Driving one run: claim, journal, steps in order, rollback, the terminal event (SPEC §7, §8).

The journal is saved before each step starts, so a crash at any point leaves a record that
`recover()` finishes on the next start: rolled back when `migrate` had started, failed
otherwise. A stop request (SIGTERM) is honoured between steps, never inside one, and ends
the run the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from host_agent.backend import BackendClient
from host_agent.clock import UTC
from host_agent.config import AgentConfig
from host_agent.errors import StepFailed
from host_agent.git import Git
from host_agent.journal import Journal, RunRecord
from host_agent.presets import make_preset
from host_agent.reporter import Reporter
from host_agent.steps import STEP_FUNCTIONS, STEPS, StepContext, read_version, restore_checkout, rollback
from host_agent.trigger import ClaimStore, Trigger

logger = logging.getLogger("host_agent.runner")
# Fault injection for the crash tests: SIGKILL ourselves when this step is about to start.
CRASH_AT_VARIABLE = "OPENTRACE_AGENT_CRASH_AT"


class Runner:
    def __init__(
        self,
        config: AgentConfig,
        reporter: Reporter,
        backend: BackendClient,
        *,
        stop: threading.Event | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_database_restore: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.after_database_restore = after_database_restore
        self.reporter = reporter
        self.backend = backend
        self.stop = stop or threading.Event()
        self.now = now
        self.journal = Journal(config.state_dir, config.backups_dir)
        self.claims = ClaimStore(config.state_dir)
        self.git = Git(config.git, config.project_dir, config.env)

    def _context(
        self,
        record: RunRecord,
        min_upgrade_from: str | None = None,
        downtime: bool = False,
        downtime_seconds: int | None = None,
    ) -> StepContext:
        def log(step: str, lines: list[str]) -> None:
            self.reporter.log(record.run_id, step, lines)

        return StepContext(
            config=self.config,
            record=record,
            journal=self.journal,
            preset=make_preset(self.config, log),
            git=self.git,
            backend=self.backend,
            log=log,
            min_upgrade_from=min_upgrade_from,
            downtime=downtime,
            downtime_seconds=downtime_seconds,
            restoring_database=lambda: self._restoring_database(record.run_id),
        )

    @contextmanager
    def _restoring_database(self, run_id: str) -> Iterator[None]:
        try:
            with self.reporter.replaying(run_id):
                yield
        finally:
            # The restore dropped what the backend recorded since the backup, our heartbeats
            # too: without a new one at once the agent looks offline to the admin.
            self.after_database_restore()

    def _crash_point(self, step: str) -> None:
        if os.environ.get(CRASH_AT_VARIABLE) == step:
            os.kill(os.getpid(), signal.SIGKILL)

    def execute(self, trigger: Trigger) -> str:
        """Run a claimed trigger to its end; returns the terminal state."""
        run_id = trigger.run_id
        self._crash_point("claimed")
        try:
            from_commit = self.git.head()
        except StepFailed as exc:
            from_commit = ""
            early: StepFailed | None = exc
        else:
            early = None
        record = RunRecord(
            run_id=run_id,
            target_version=trigger.target_version,
            git_tag=trigger.git_tag,
            git_commit=trigger.git_commit,
            from_version=read_version(self.config.project_dir),
            from_commit=from_commit,
            from_branch=self.git.branch() if early is None else None,
            started_at=self.now().isoformat(),
        )
        self.journal.save(record)
        self.reporter.event(
            run_id,
            "run",
            state="running",
            message=f"updating {record.from_version} → {record.target_version}"
            f" (requested by {trigger.requested_by})",
        )
        ctx = self._context(record, trigger.min_upgrade_from, trigger.downtime, trigger.downtime_seconds)
        failure: StepFailed | None = early
        for step in STEPS:
            if failure is not None:
                break
            if self.stop.is_set():
                failure = StepFailed(step, "the agent was asked to stop (SIGTERM) before this step")
                break
            record.step = step
            if step == "deploy":
                record.deploy_started = True
            if step == "migrate":
                record.migrate_started = True
            self.journal.save(record)
            self._crash_point(step)
            self.reporter.event(run_id, "step", step=step, state="started")
            try:
                message = STEP_FUNCTIONS[step](ctx)
            except StepFailed as exc:
                failure = exc
            except Exception as exc:  # a bug or an OS error must still end the run cleanly
                logger.exception("step %s crashed", step)
                failure = StepFailed(step, f"unexpected error: {type(exc).__name__}: {exc}")
            if failure is not None:
                self.reporter.event(run_id, "step", step=step, state="failed", message=failure.message)
                break
            record.steps_done.append(step)
            self.journal.save(record)
            self.reporter.event(run_id, "step", step=step, state="succeeded", message=message)
        self._crash_point("finish")
        if failure is None:
            return self._finish(record, "succeeded", f"{record.target_version} is running and healthy")
        return self._end_failed(ctx, failure.step, failure.message)

    def _end_failed(self, ctx: StepContext, step: str, cause: str) -> str:
        record = ctx.record
        if record.migrate_started or record.deploy_started:
            record.step = "rollback"
            self.journal.save(record)
            self.reporter.event(record.run_id, "step", step="rollback", state="started", message=cause)
            try:
                message = rollback(ctx)
            except StepFailed as exc:
                self.reporter.event(
                    record.run_id, "step", step="rollback", state="failed", message=exc.message
                )
                return self._finish(
                    record, "failed", f"{step} failed ({cause}); rollback failed too: {exc.message}"
                )
            self.reporter.event(record.run_id, "step", step="rollback", state="succeeded", message=message)
            return self._finish(record, "rolled_back", f"{step} failed: {cause}")
        if record.from_commit:
            try:
                restore_checkout(ctx, step)
                if step == "build" or "build" in record.steps_done:
                    # The build may have changed what the running release uses (local: its venv).
                    ctx.preset.undo_build(step, record.requirements_changed)
            except StepFailed as exc:
                cause = f"{cause}; restoring the previous release failed: {exc.message}"
        # Steps that never started are reported as skipped, so the timeline is complete.
        started = [s for s in STEPS if s in record.steps_done or s == step]
        for later in STEPS[len(started) :]:
            self.reporter.event(record.run_id, "step", step=later, state="skipped")
        return self._finish(record, "failed", f"{step} failed: {cause}")

    def _finish(self, record: RunRecord, outcome: str, message: str) -> str:
        if record.serving_stopped_at is not None:
            message = self._resume_serving(record, message)
        record.outcome = outcome
        record.cause = None if outcome == "succeeded" else message
        self.reporter.event(record.run_id, "run", state=outcome, message=message)
        self.journal.finish(record)
        self.claims.finish(record.run_id)
        return outcome

    def _resume_serving(self, record: RunRecord, message: str) -> str:
        """However the run ends, nothing of a downtime release's stop stays behind (the local flag)."""
        step = record.step or "rollback"
        ctx = self._context(record)
        try:
            done = ctx.preset.resume_serving(step)
        except StepFailed as exc:
            logger.error("run %s: %s", record.run_id, exc.message)
            return f"{message}; the maintenance flag could not be checked: {exc.message}"
        if done:
            ctx.log(step, [done])
        return message

    def recover(self) -> str | None:
        """Finish a run a crash left unfinished; returns its terminal state, or None when there was none."""
        record = self.journal.load()
        if record is None:
            return None
        step = record.step or "preflight"
        logger.warning("finishing run %s, interrupted at %s", record.run_id, step)
        ctx = self._context(record)
        mismatch = self._from_commit_mismatch(record)
        if mismatch:
            # Never check out a commit only the journal names: end the run, touch nothing.
            logger.error("run %s: %s", record.run_id, mismatch)
            return self._finish(record, "failed", f"not recovered: {mismatch}")
        if all(s in record.steps_done for s in STEPS):
            # Every step had succeeded; only the final report was missing.
            return self._finish(record, "succeeded", f"{record.target_version} is running and healthy")
        if step == "rollback":
            record.deploy_started = True
            cause = record.cause or "the agent stopped during rollback"
        elif step in record.steps_done:
            cause = f"the agent stopped after {step}"
        else:
            cause = f"the agent stopped during {step}"
            self.reporter.event(record.run_id, "step", step=step, state="failed", message=cause)
        return self._end_failed(ctx, step, cause)

    def _from_commit_mismatch(self, record: RunRecord) -> str | None:
        """Why the journal's `from_commit` is not the release it says the run started from."""
        if not record.from_commit:
            return None
        try:
            found = self.git.show("rollback", record.from_commit, "VERSION").strip()
        except StepFailed:
            return f"the journal's from_commit {record.from_commit[:12]} is not a commit of this checkout"
        if found != record.from_version:
            return (
                f"the journal's from_commit {record.from_commit[:12]} holds VERSION {found[:64]!r}, "
                f"not {record.from_version!r}"
            )
        return None

    def recover_orphans(self) -> list[str]:
        """Claimed triggers with no journal: the agent died between claiming and starting them.

        They are never executed (a claimed trigger runs at most once); their runs end failed.
        """
        ended = []
        for run_id in self.claims.orphans():
            self.reporter.event(
                run_id,
                "run",
                state="failed",
                message="the agent stopped before the run started; not executed",
            )
            self.claims.finish(run_id)
            ended.append(run_id)
        return ended
