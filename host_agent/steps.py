"""The steps of an update (SPEC §7), in order, and the rollback. Same code for every preset.

Each step takes the `StepContext` and returns a short message, or raises `StepFailed`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from contract import events
from contract.events import StepName
from contract.migrations import INCOMPATIBLE, STATE_KEYS
from contract.registry import parse_version
from host_agent.backend import BackendClient
from host_agent.backup import (
    BackupError,
    apply_retention,
    create_backup,
    restore_clickhouse,
    restore_database,
    verify_backup,
)
from host_agent.backup_report import report_sets
from host_agent.config import AgentConfig
from host_agent.errors import StepFailed
from host_agent.git import Git
from host_agent.journal import Journal, RunRecord
from host_agent.presets import Preset
from host_agent.shell import CommandFailed

# SPEC §7: `migrate` runs while the old release still serves, so the release's migrations
# must be backward compatible with it; `build` checks that before anything in the databases
# changes (unless the registry entry declares downtime), and saves the state a rollback
# reverts to.
STEPS: tuple[StepName, ...] = events.STEPS
MIN_FREE_BYTES = 256 * 1024 * 1024


@dataclass
class StepContext:
    config: AgentConfig
    record: RunRecord
    journal: Journal
    preset: Preset
    git: Git
    backend: BackendClient
    log: Callable[[str, list[str]], None]
    min_upgrade_from: str | None = None
    downtime: bool = False  # the registry entry declares downtime: its migrations are not checked
    downtime_seconds: int | None = None  # how long the registry entry says the downtime lasts
    # Wraps a database restore: the backend loses the events it stored since the backup.
    restoring_database: Callable[[], AbstractContextManager[None]] = nullcontext
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def read_version(project_dir: Path) -> str:
    try:
        return (project_dir / "VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return "unknown"


def pin_mismatch(tag: str, commit: str, pinned: str) -> str:
    return (
        f"tag {tag} is {commit}, the release pins {pinned}; a release's pin is the tag's commit, "
        f"`git rev-parse {tag}^{{commit}}` (for an annotated tag, plain `git rev-parse {tag}` "
        "gives the tag object instead; see docs/publishing.md)"
    )


def preflight(ctx: StepContext) -> str:
    dirty = ctx.git.dirty_files()
    if dirty:
        raise StepFailed("preflight", f"the work tree has local changes: {', '.join(dirty[:10])}")
    running = ctx.record.from_version
    current, target = parse_version(running), parse_version(ctx.record.target_version)
    if target is None:
        raise StepFailed("preflight", f"{ctx.record.target_version!r} is not a version")
    if current is not None and target <= current:
        raise StepFailed("preflight", f"{ctx.record.target_version} is not newer than the running {running}")
    minimum = parse_version(ctx.min_upgrade_from) if ctx.min_upgrade_from else None
    if minimum is not None and current is not None and current < minimum:
        raise StepFailed(
            "preflight",
            f"{ctx.record.target_version} needs at least {ctx.min_upgrade_from}; this is {running}",
        )
    tagged = ctx.git.remote_tag_commit(ctx.config.remote, ctx.record.git_tag)
    if tagged is None:
        raise StepFailed("preflight", f"remote {ctx.config.remote!r} has no tag {ctx.record.git_tag}")
    # Checked before the backup, so a wrong pin fails in a second, not after the backup.
    if ctx.record.git_commit and tagged != ctx.record.git_commit:
        raise StepFailed("preflight", pin_mismatch(ctx.record.git_tag, tagged, ctx.record.git_commit))
    ctx.config.data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ctx.config.data_dir).free
    if free < MIN_FREE_BYTES:
        raise StepFailed("preflight", f"only {free // 2**20} MiB free in {ctx.config.data_dir}")
    done = f"clean tree, tag {ctx.record.git_tag} on {ctx.config.remote}, {free // 2**20} MiB free"
    engine = ctx.preset.preflight("preflight")
    return f"{done}; {engine}" if engine else done


def backup(ctx: StepContext) -> str:
    lines: list[str] = []
    try:
        directory = create_backup(
            ctx.preset.backup_tools(),
            from_version=ctx.record.from_version,
            commit=ctx.record.from_commit,
            log=lines.append,
        )
    except BackupError as exc:
        raise StepFailed("backup", str(exc)) from None
    finally:
        if lines:
            ctx.log("backup", lines)
    ctx.record.backup_dir = str(directory)
    ctx.journal.save(ctx.record)
    removed = apply_retention(ctx.config.backups_dir, ctx.config.backup_retention, protect=directory)
    if removed:
        ctx.log("backup", [f"retention removed {p.name}" for p in removed])
    report_sets(ctx.backend, ctx.config.backups_dir)
    return f"backup set {directory.name}"


def fetch(ctx: StepContext) -> str:
    record = ctx.record
    ctx.git.fetch(ctx.config.remote)
    tag_ref = f"refs/tags/{record.git_tag}"
    commit = ctx.git.rev_parse("fetch", tag_ref)
    if record.git_commit and commit != record.git_commit:
        raise StepFailed("fetch", pin_mismatch(record.git_tag, commit, record.git_commit))
    old_requirements = _file_at(ctx.git, record.from_commit, "requirements.txt")
    ctx.git.checkout("fetch", commit)
    if ctx.git.head("fetch") != commit:
        raise StepFailed("fetch", "HEAD is not the tag's commit after checkout")
    found = read_version(ctx.config.project_dir)
    if found != record.target_version:
        raise StepFailed(
            "fetch", f"VERSION in {record.git_tag} is {found!r}, expected {record.target_version!r}"
        )
    record.requirements_changed = old_requirements != _file_at(ctx.git, commit, "requirements.txt")
    ctx.journal.save(record)
    return f"{record.git_tag} checked out at {commit[:12]}"


def _file_at(git: Git, ref: str, path: str) -> str | None:
    try:
        return git.show("fetch", ref, path)
    except StepFailed:
        return None


def build(ctx: StepContext) -> str:
    done = [ctx.preset.build("build", ctx.record.requirements_changed)]
    done.append(check_and_save_migration_state(ctx))
    return "; ".join(done)


def check_and_save_migration_state(ctx: StepContext) -> str:
    """Refuse, before the databases change, migrations the running release cannot live with;
    then save `migrate_all --state`: what a rollback reverts to (SPEC §7). One command does both.
    """
    check = not ctx.downtime
    try:
        state = ctx.preset.migration_state("build", check_compatible=check)
    except CommandFailed as exc:
        if exc.returncode != INCOMPATIBLE:
            raise
        raise StepFailed(
            "build",
            f"refused: {ctx.record.target_version}'s migrations are not backward compatible with the "
            f"running {ctx.record.from_version} and its registry entry does not declare downtime; "
            f"nothing was migrated ({exc.message})",
        ) from None
    try:
        parsed = json.loads(state)
    except ValueError:
        parsed = None
    if not (isinstance(parsed, dict) and set(parsed) == STATE_KEYS):
        raise StepFailed("build", f"`migrate_all --state` printed no migration state: {state[:200]!r}")
    ctx.record.migration_state = state
    ctx.journal.save(ctx.record)
    if check:
        return (
            "its Django and ClickHouse migrations pass the backward-compatibility checks; "
            "migration state saved"
        )
    return (
        "the registry entry declares downtime: its migrations are not checked for backward compatibility; "
        "migration state saved"
    )


def deploy(ctx: StepContext) -> str:
    done = ctx.preset.deploy("deploy")
    if ctx.record.serving_stopped_at is not None:
        return f"{done}; {ctx.record.target_version} starts after the declared downtime"
    return done


def migrate(ctx: StepContext) -> str:
    if not ctx.downtime:
        return ctx.preset.migrate("migrate")
    stopped = stop_serving(ctx)
    return f"{stopped}; {ctx.preset.migrate('migrate')}"


def down_for(ctx: StepContext) -> str:
    """Seconds since `migrate` stopped the old release (the journal's monotonic clock reading)."""
    stopped = ctx.record.serving_stopped_at
    seconds = ctx.monotonic() - stopped if stopped is not None else -1.0
    # After a reboot the reading is of another clock: no figure rather than a wrong one.
    return f"{seconds:.1f} s" if seconds >= 0 else "an unknown time (the host restarted)"


def declared(ctx: StepContext) -> str:
    return f"about {ctx.downtime_seconds} s" if ctx.downtime_seconds else "no length given"


def stop_serving(ctx: StepContext) -> str:
    """A release that declares downtime: the old release stops serving before its migrations run.

    Journaled first, so whatever ends the run (a failure, a crash) undoes it.
    """
    record = ctx.record
    record.serving_stopped_at = ctx.monotonic()
    ctx.journal.save(record)
    done = ctx.preset.stop_serving("migrate", record.from_version)
    status = confirm_stopped(ctx)
    stopped = (
        f"{record.from_version} stopped serving for the downtime {record.target_version} declares "
        f"({declared(ctx)}): {done}; {status}"
    )
    ctx.log("migrate", [stopped])  # in the log too, should the migration fail
    return stopped


MAINTENANCE_CONFIRM_SECONDS = 5.0


def confirm_stopped(ctx: StepContext) -> str:
    """What /healthz answers now: 503 is the maintenance page (or no web app at all)."""
    deadline = ctx.monotonic() + MAINTENANCE_CONFIRM_SECONDS
    while True:
        status, body = ctx.backend.get_json("/healthz", timeout=2.0)
        if status == 503:
            return "/healthz answers 503"
        if ctx.monotonic() >= deadline:
            break
        ctx.sleep(0.5)
    # An old release that predates the maintenance page keeps answering; say so, go on.
    ctx.log("migrate", [f"/healthz still answers HTTP {status} ({body.get('status')!r})"])
    return (
        f"/healthz still answers HTTP {status}: {ctx.record.from_version} does not show the maintenance page"
    )


def wait_healthy(ctx: StepContext, step: str, version: str, timeout: float) -> str:
    deadline = ctx.monotonic() + timeout
    last = "no answer"
    while True:
        status, body = ctx.backend.get_json("/healthz", timeout=5.0)
        if status == 200 and body.get("version") == version:
            return f"/healthz is ok and reports {version}"
        if status:
            last = f"HTTP {status}, version {body.get('version')!r}, failing {body.get('failing')}"
        if ctx.monotonic() >= deadline:
            raise StepFailed(
                step, f"/healthz did not report a healthy {version} within {timeout:.0f} s ({last})"
            )
        ctx.sleep(1.0)


def healthcheck(ctx: StepContext) -> str:
    healthy = wait_healthy(ctx, "healthcheck", ctx.record.target_version, ctx.config.healthcheck_timeout)
    done = [healthy]
    if ctx.record.serving_stopped_at is not None:
        done.append(f"downtime {down_for(ctx)} (declared: {declared(ctx)})")
        resumed = resume_serving(ctx, "healthcheck")
        if resumed:
            done.append(resumed)
    running = ctx.preset.verify_running("healthcheck")
    if running:
        done.append(running)
    return "; ".join(done)


def resume_serving(ctx: StepContext, step: str) -> str | None:
    """`preset.resume_serving`, whose failure fails nothing: the new release is healthy, or the
    old one must come back regardless; the run's end tries again (`Runner._finish`)."""
    try:
        return ctx.preset.resume_serving(step)
    except StepFailed as exc:
        ctx.log(step, [exc.message])
        return None


STEP_FUNCTIONS: dict[str, Callable[[StepContext], str]] = {
    "preflight": preflight,
    "backup": backup,
    "fetch": fetch,
    "build": build,
    "deploy": deploy,
    "migrate": migrate,
    "healthcheck": healthcheck,
}


def restore_checkout(ctx: StepContext, step: str) -> None:
    """Back to the commit (and branch) the run started from."""
    record = ctx.record
    if (
        record.from_branch
        and ctx.git.rev_parse(step, f"refs/heads/{record.from_branch}") == record.from_commit
    ):
        ctx.git.checkout_branch(step, record.from_branch)
    else:
        ctx.git.checkout(step, record.from_commit)


def revert_migrations(ctx: StepContext) -> str | None:
    """Undo the run's migrations with the new release's code; None when only a restore can.

    A migration that cannot be undone (`migrate_all --revert-to` exits 1 naming it, having
    changed nothing), a revert that fails, or a run with no saved state leaves the backup.
    """
    state = ctx.record.migration_state
    if not state:
        ctx.log("rollback", ["no migration state was saved before `migrate`: the backup is restored"])
        return None
    try:
        lines = ctx.preset.revert_migrations("rollback", state)
    except StepFailed as exc:
        ctx.log(
            "rollback", [f"the migrations could not be reverted, so the backup is restored: {exc.message}"]
        )
        return None
    reverted = [
        line.strip() for line in lines if line.startswith(("ClickHouse: reverted", "Django: reverted"))
    ]
    return "migrations reverted (" + "; ".join(reverted or ["nothing to revert"]) + ")"


def rollback(ctx: StepContext) -> str:
    """Migrations reverted (or, for an irreversible one, the database restored), previous release back."""
    record = ctx.record
    done: list[str] = []
    reverted = revert_migrations(ctx) if record.migrate_started else None
    if reverted:
        done.append(reverted)
    restore_checkout(ctx, "rollback")
    done.append(f"checked out {record.from_commit[:12]}")
    if record.migrate_started and not reverted:
        if not record.backup_dir:
            raise StepFailed("rollback", "migrate had started but the run has no backup to restore")
        tools = ctx.preset.backup_tools()
        directory = Path(record.backup_dir)
        try:
            manifest = verify_backup(directory)
            with ctx.restoring_database():
                lines = [
                    restore_database(tools, directory, manifest),
                    restore_clickhouse(tools, directory, manifest),
                ]
        except BackupError as exc:
            raise StepFailed("rollback", f"restoring the database failed: {exc}") from None
        ctx.log("rollback", lines)
        done.append(f"database restored from {directory.name}")
    if record.serving_stopped_at is not None:
        # Its migrations are undone: the old release may serve again (local: the flag goes).
        resumed = resume_serving(ctx, "rollback")
        if resumed:
            done.append(resumed)
    if record.deploy_started or not reverted or record.serving_stopped_at is not None:
        # Not serving (stopped for the declared downtime, or replaced by `deploy`): started again.
        done.append(ctx.preset.redeploy_previous("rollback", record.requirements_changed))
    else:
        # Failed at `migrate`, reverted: the old release never stopped serving.
        ctx.preset.undo_build("rollback", record.requirements_changed)
        done.append(f"{record.from_version} kept serving")
    done.append(wait_healthy(ctx, "rollback", record.from_version, ctx.config.healthcheck_timeout))
    if record.serving_stopped_at is not None:
        done.append(f"{record.from_version} serves again after a downtime of {down_for(ctx)}")
    return "; ".join(done)
