"""The agent's own state dir (SPEC §5): only the agent's user may write in it.

`<DATA_DIR>` is the web app's (uid 10001 in the containers): whoever controls the app can
rename, replace or fill anything in it, even a root-owned folder it cannot read. So the
journal, the outbox, the claims, the locks and the pid and log files live elsewhere:
`OPENTRACE_AGENT_STATE_DIR` / `--state-dir`; by default `/var/lib/opentrace-agent` for root
(the unit's `StateDirectory=`) and `<DATA_DIR>/agent` when the agent runs as the data dir's
owner (`make run`, tests). `prepare()` makes it 0700 and refuses a link or a folder someone
else owns. `migrate_legacy()` copies an older install's state out of
`<DATA_DIR>/updates/agent` once, refusing links and anything another user could have written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from host_agent.errors import ConfigError
from host_agent.fsutil import write_private

logger = logging.getLogger("host_agent.state")
ROOT_DEFAULT = Path("/var/lib/opentrace-agent")
MIGRATED = "legacy-migrated"
_LEGACY_FILES = {"journal.json", "last_run.json", "effective.json"}
_LEGACY_MAX_BYTES = 64 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def default_state_dir(data_dir: Path) -> Path:
    """Root's is /var/lib/opentrace-agent, unless root owns the data dir too."""
    if os.geteuid() != 0:
        return data_dir / "agent"
    try:
        owner = data_dir.stat().st_uid
    except FileNotFoundError:
        owner = 0  # root will create it
    return data_dir / "agent" if owner == 0 else ROOT_DEFAULT


def prepare(state_dir: Path) -> None:
    """Create the state dir 0700 (its parents as needed) and check it is the agent's alone."""
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(state_dir, 0o700)
    try:
        fd = os.open(state_dir, _DIR_FLAGS)
    except OSError as exc:
        raise ConfigError(
            f"OPENTRACE_AGENT_STATE_DIR / --state-dir: {state_dir} cannot be opened as a directory "
            f"without following links ({exc.strerror})"
        ) from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise ConfigError(
                f"OPENTRACE_AGENT_STATE_DIR / --state-dir: {state_dir} belongs to uid {info.st_uid}, "
                f"not to the agent's uid {os.geteuid()}; refusing to keep the agent's state there"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def private_subdir(path: Path) -> Path:
    """A folder inside the state dir (0700). Nobody else can plant a link there."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _open_own_dir(name: str, dir_fd: int | None, what: str) -> int | None:
    """A folder of a legacy layout, when it is a real folder only the agent's user could write."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("not migrating %s: cannot open it without following links (%s)", what, exc.strerror)
        return None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        logger.warning(
            "not migrating %s: it belongs to uid %d (mode %o), not only to the agent",
            what,
            info.st_uid,
            stat.S_IMODE(info.st_mode),
        )
        os.close(fd)
        return None
    return fd


def _read_own_file(name: str, dir_fd: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None  # a link, or gone
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_nlink != 1
            or info.st_uid != os.geteuid()
            or info.st_size > _LEGACY_MAX_BYTES
        ):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _copy_files(dir_fd: int, dest: Path, keep: Callable[[str], bool]) -> int:
    copied = 0
    for name in sorted(os.listdir(dir_fd)):
        if name.startswith(".") or not keep(name):
            continue
        data = _read_own_file(name, dir_fd)
        if data is None:
            logger.warning("not migrating %s: not a regular file of the agent's own", dest / name)
            continue
        write_private(private_subdir(dest) / name, data)
        copied += 1
    return copied


def _claimed_names(updates_fd: int, folder: str) -> list[str]:
    fd = _open_own_dir(folder, updates_fd, f"updates/{folder}")
    if fd is None:
        return []
    try:
        names = []
        for name in os.listdir(fd):
            stem = name.removesuffix(".json")
            try:
                if name.endswith(".json") and str(uuid.UUID(stem)) == stem:
                    names.append(stem)
            except ValueError:
                continue
        return names
    finally:
        os.close(fd)


def migrate_legacy(data_dir: Path, state_dir: Path) -> int:
    """Copy an older install's state from `<DATA_DIR>/updates/agent` once; the number of files.

    Nothing is moved or deleted in the data dir (the agent writes nothing there); a marker in
    the state dir says it was done.
    """
    marker = state_dir / MIGRATED
    if marker.exists():
        return 0
    copied = 0
    try:
        updates_fd = os.open(data_dir / "updates", _DIR_FLAGS)
    except OSError:
        updates_fd = None
    if updates_fd is not None:
        try:
            agent_fd = _open_own_dir("agent", updates_fd, "updates/agent")
            if agent_fd is not None:
                try:
                    copied += _copy_files(agent_fd, state_dir, _LEGACY_FILES.__contains__)
                    outbox_fd = _open_own_dir("outbox", agent_fd, "updates/agent/outbox")
                    if outbox_fd is not None:
                        try:
                            copied += _copy_files(
                                outbox_fd, state_dir / "outbox", lambda n: n.endswith((".jsonl", ".acked"))
                            )
                            dead_fd = _open_own_dir("dead", outbox_fd, "updates/agent/outbox/dead")
                            if dead_fd is not None:
                                try:
                                    copied += _copy_files(
                                        dead_fd, state_dir / "outbox" / "dead", lambda n: n.endswith(".jsonl")
                                    )
                                finally:
                                    os.close(dead_fd)
                        finally:
                            os.close(outbox_fd)
                finally:
                    os.close(agent_fd)
            # Which runs were claimed: names only, so a run id is never executed twice.
            for folder in ("processing", "done"):
                for run_id in _claimed_names(updates_fd, folder):
                    write_private(private_subdir(state_dir / folder) / f"{run_id}.json", b"{}\n")
                    copied += 1
        finally:
            os.close(updates_fd)
    if copied:
        logger.info("migrated %d file(s) of the agent's state from %s to %s", copied, data_dir, state_dir)
    write_private(marker, b"done\n")
    return copied
