"""The agent: one object wiring the outbox, reporter, heartbeat, runner and watcher together.

`process_once()` is the loop's unit (one pending trigger, or nothing); `run_forever()` only
loops, waits and checks the stop flag; `once` is `recover()` + `process_once()` + a bounded flush.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from contract import fetch as registry_fetch
from contract import trigger as trigger_file
from contract.files import BoundedRead
from contract.registry import RegistryError
from host_agent import state
from host_agent.backend import BackendClient
from host_agent.backup import apply_retention, backup_sets, create_backup
from host_agent.backup_report import report_sets, verify_set
from host_agent.clock import UTC
from host_agent.config import AgentConfig
from host_agent.dropbox import DropBox
from host_agent.errors import AgentError, TriggerRejected
from host_agent.heartbeat import Heartbeat
from host_agent.journal import Journal
from host_agent.lock import FileLock, LockHeld
from host_agent.outbox import Outbox
from host_agent.presets import make_preset
from host_agent.reporter import Reporter
from host_agent.runner import Runner
from host_agent.steps import read_version
from host_agent.trigger import RegistryMemory, Trigger, parse_trigger, run_id_hint
from host_agent.watcher import Watcher

logger = logging.getLogger("host_agent")
FAILED_OUTCOMES = {"failed", "rolled_back"}


def prepare_updates_dir(config: AgentConfig) -> set[int]:
    """`<DATA_DIR>/updates/` belongs to whoever owns the data dir, not to the agent.

    The backend writes triggers there as the app's user (in compose, the containers' uid
    10001). An agent running as root that created the folder as root would lock it out, and
    every "Install update" would fail; so a folder the agent makes is given to the data dir's
    owner, and so is one an older agent left owned by root. A link is left alone (the drop box
    refuses it). Returns the uids an updates folder may belong to.
    """
    updates = config.updates_dir
    config.data_dir.mkdir(parents=True, exist_ok=True)
    owner = config.data_dir.stat()
    with contextlib.suppress(FileExistsError):
        os.mkdir(updates, 0o770)
    if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
        # Ours (just made, or left by an older agent): chown the descriptor of what is there,
        # never a path that may have been swapped since; a link is not opened at all.
        try:
            fd = os.open(updates, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return {os.geteuid(), owner.st_uid}
        try:
            if os.fstat(fd).st_uid == 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
                logger.info("gave %s to uid %d, the data dir's owner", updates, owner.st_uid)
        finally:
            os.close(fd)
    return {os.geteuid(), owner.st_uid}


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        stop: threading.Event | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.now = now
        owners = prepare_updates_dir(config)
        state.prepare(config.state_dir)
        state.migrate_legacy(config.data_dir, config.state_dir)
        self.dropbox = DropBox(config.updates_dir, owners)
        self.registry = RegistryMemory(config.state_dir)
        self.backend = BackendClient(config.backend_url, config.secret)
        self.outbox = Outbox(config.state_dir / "outbox")
        self.reporter = Reporter(self.outbox, self.backend, now=now)
        self.heartbeat = Heartbeat(
            self.backend,
            lambda: read_version(config.project_dir),
            interval=config.heartbeat_interval,
            state=lambda: (self.current_run is not None, self.current_run),
            now=now,
        )
        self.runner = Runner(
            config,
            self.reporter,
            self.backend,
            stop=self.stop,
            now=now,
            after_database_restore=self.heartbeat.prompt,
        )
        self.claims = self.runner.claims
        self.process_lock = FileLock(config.state_dir / "agent.lock")
        self.run_lock = FileLock(config.state_dir / "run.lock")
        self.current_run: str | None = None
        self._heartbeat_thread: threading.Thread | None = None

    # --- units of work -----------------------------------------------------------------
    def recover(self) -> str | None:
        with self.run_lock:
            unfinished = self.runner.journal.load()
            if unfinished is not None:
                self._run_started(unfinished.run_id)
            try:
                outcome = self.runner.recover()
            finally:
                if unfinished is not None:
                    self._run_ended()
            if self.runner.recover_orphans() and outcome is None:
                outcome = "failed"
            return outcome

    def _run_started(self, run_id: str) -> None:
        self.current_run = run_id
        self.heartbeat.prompt()

    def _run_ended(self) -> None:
        # Without this the backend would show the agent busy until the next regular heartbeat.
        self.current_run = None
        self.heartbeat.prompt()

    def process_once(self) -> str | None:
        """Handle the pending trigger, if any: an outcome, "rejected", or None when there was none."""
        if not self.dropbox.pending():
            return None
        with self.run_lock:
            if not self.dropbox.pending():
                return None
            try:
                raw = self.dropbox.read()
            except FileNotFoundError:
                return None  # withdrawn by the backend (cancel, expiry)
            except (trigger_file.TriggerError, OSError) as exc:
                self._reject(str(exc), None, self._identity_now())
                return "rejected"
            try:
                trigger = self._verify(raw)
                self.claims.claim(trigger, raw.data)
            except TriggerRejected as exc:
                self._reject(str(exc), raw.data, raw.identity)
                return "rejected"
            # Claimed in our state first, then unlinked: the trigger runs at most once.
            if not self.dropbox.remove(raw.identity):
                logger.info("run %s: the trigger was withdrawn before it was taken", trigger.run_id)
                self.claims.abandon(trigger.run_id)
                return None
            self.registry.accept(trigger.meta_version)
            self._run_started(trigger.run_id)
            try:
                return self.runner.execute(trigger)
            finally:
                self._run_ended()

    def _identity_now(self) -> tuple[int, int] | None:
        found = self.dropbox.identity()
        return found[:2] if found else None

    def _fetch_registry(self) -> bytes:
        result = registry_fetch.fetch(self.config.registry_url)
        if result.body is None:
            raise RegistryError("the registry sent no document", permanent=False)
        return result.body

    def _verify(self, raw: BoundedRead) -> Trigger:
        try:
            return parse_trigger(
                raw.data,
                secret=self.config.secret,
                registry_keys=self.config.registry_keys,
                running_version=read_version(self.config.project_dir),
                identity=raw.identity,
                now=self.now(),
                highest_meta_version=self.registry.highest(),
                # With no keys pinned, what the registry offers, read by us, not the trigger's copy.
                fetch_registry=None if self.config.registry_keys else self._fetch_registry,
            )
        except AgentError:
            raise
        except Exception as exc:
            # Last resort: an exception escaping here would kill the agent again on every
            # restart. Reject it, naming what went wrong.
            logger.exception("unexpected error reading the trigger")
            raise TriggerRejected(
                f"the trigger could not be read ({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc

    def _reject(self, reason: str, data: bytes | None, identity: tuple[int, int] | None) -> None:
        run_id = run_id_hint(data)
        reused = run_id is not None and self.claims.was_used(run_id)
        self.claims.reject(reason, data, self.now())
        if identity is not None:
            self.dropbox.remove(identity)
        logger.warning("trigger rejected: %s", reason)
        # A reused run id belongs to a run that already ended: never write into its history.
        if run_id is not None and not reused:
            self.reporter.event(run_id, "run", state="failed", message=f"trigger rejected: {reason}")

    def backup_now(self) -> str:
        with self.run_lock:
            tools = make_preset(self.config, lambda step, lines: None).backup_tools()
            directory = create_backup(
                tools,
                from_version=read_version(self.config.project_dir),
                commit=self.runner.git.head(),
                log=lambda line: logger.info("%s", line),
            )
            apply_retention(self.config.backups_dir, self.config.backup_retention, protect=directory)
            checked = verify_set(tools, directory)
            logger.info("verification: %s (%s)", checked["state"], checked["detail"])
            report_sets(self.backend, self.config.backups_dir)
            return str(directory)

    def verify_now(self, name: str | None) -> dict[str, dict[str, Any]]:
        """`verify [SET]`: the named set, or every set; each result, and the list reported."""
        tools = make_preset(self.config, lambda step, lines: None).backup_tools()
        sets = backup_sets(self.config.backups_dir)
        chosen = [p for p in sets if name is None or p.name == name]
        if name is not None and not chosen:
            raise AgentError(f"no backup set named {name!r} in {self.config.backups_dir}")
        results = {p.name: verify_set(tools, p) for p in chosen}
        report_sets(self.backend, self.config.backups_dir)
        return results

    # --- loops -------------------------------------------------------------------------
    def start_background(self) -> None:
        self.reporter.start()
        self._heartbeat_thread = threading.Thread(
            target=self.heartbeat.run, args=(self.stop,), name="heartbeat", daemon=True
        )
        self._heartbeat_thread.start()

    def stop_background(self) -> None:
        self.stop.set()
        self.heartbeat.wake()
        self.reporter.stop()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=10)

    def run_forever(self, *, use_inotify: bool = True) -> int:
        self.process_lock.acquire()
        watcher = Watcher(self.config.updates_dir, use_inotify=use_inotify)
        logger.info(
            "agent watching %s (%s), preset %s, reporting to %s",
            self.config.updates_dir,
            watcher.mode,
            self.config.preset,
            self.config.backend_url,
        )
        self.start_background()
        try:
            self.recover()
            while not self.stop.is_set():
                if self.process_once() is not None:
                    continue
                # Capped at 1 s so a stop request is noticed promptly; inotify wakes us sooner.
                watcher.wait(1.0)
        finally:
            watcher.close()
            self.dropbox.close()
            self.stop_background()
            self.reporter.flush(5.0)
            self.process_lock.release()
        return 0

    def run_once(self, flush_timeout: float = 10.0) -> int:
        self.process_lock.acquire()
        # Live progress while the run goes on; what is left is flushed (bounded) at the end.
        self.start_background()
        try:
            recovered = self.recover()
            outcome = self.process_once()
        finally:
            self.stop_background()
            self.reporter.flush(flush_timeout)
            self.process_lock.release()
        if outcome == "rejected":
            return 2
        final = outcome or recovered
        return 1 if final in FAILED_OUTCOMES else 0

    def status(self) -> dict[str, object]:
        journal = Journal(self.config.state_dir, self.config.backups_dir)
        current, last = journal.load(), journal.last()
        try:
            FileLock(self.config.state_dir / "agent.lock").acquire().release()
            agent_running = False
        except LockHeld:
            agent_running = True
        return {
            "project_dir": str(self.config.project_dir),
            "data_dir": str(self.config.data_dir),
            "backend_url": self.config.backend_url,
            "preset": self.config.preset,
            "deployed_version": read_version(self.config.project_dir),
            "agent_running": agent_running,
            "state_dir": str(self.config.state_dir),
            "journal_refused": journal.refused,
            "trigger_pending": self.dropbox.pending(),
            "current_run": asdict(current) if current else None,
            "last_run": asdict(last) if last else None,
            "outbox_pending": self.outbox.pending_count(),
            "backups": [p.name for p in backup_sets(self.config.backups_dir)],
        }
