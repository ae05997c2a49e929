"""`<DATA_DIR>/updates/`: the drop box where the backend leaves the trigger (SPEC §5).

The folder is the web app's, so it is hostile ground: it is opened once as a directory
descriptor (`O_DIRECTORY|O_NOFOLLOW`, its type and owner checked with `fstat`), and the
agent does exactly two things there, both relative to that descriptor: it reads `trigger`
(without following a link) and it unlinks it. Nothing else is created, renamed or followed
in it. When the path names another folder than the one held (the app replaced it), the new
one is opened and checked the same way.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Collection
from pathlib import Path

from contract import trigger as trigger_file
from contract.files import BoundedRead
from host_agent.errors import ConfigError

logger = logging.getLogger("host_agent.dropbox")
NAME = trigger_file.NAME
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Identity = tuple[int, int]


class DropBox:
    def __init__(self, path: Path, owners: Collection[int]) -> None:
        self.path = path
        self.owners = frozenset(owners)
        self.fd = self._open()
        self._ignored: set[tuple[int, int, int]] = set()

    def _open(self) -> int:
        try:
            fd = os.open(self.path, _DIR_FLAGS)
        except OSError as exc:
            linked = exc.errno == errno.ELOOP or os.path.islink(self.path)
            what = "it is a symbolic link" if linked else exc.strerror
            raise ConfigError(f"{self.path} cannot be opened as the updates folder ({what})") from None
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in self.owners:
            os.close(fd)
            raise ConfigError(
                f"{self.path} belongs to uid {info.st_uid}; the updates folder must belong to the data "
                f"dir's owner or the agent (uid {', '.join(map(str, sorted(self.owners)))})"
            )
        return fd

    def _current(self) -> int:
        """The held descriptor, or a fresh one when the folder at the path was replaced."""
        try:
            now = os.lstat(self.path)
        except OSError:
            return self.fd
        held = os.fstat(self.fd)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino) and stat.S_ISDIR(now.st_mode):
            try:
                fresh = self._open()
            except ConfigError as exc:
                logger.warning("%s was replaced and is refused: %s", self.path, exc)
                return self.fd
            logger.warning("%s was replaced by another folder; watching the new one", self.path)
            os.close(self.fd)
            self.fd = fresh
        return self.fd

    def identity(self) -> tuple[int, int, int] | None:
        """(dev, inode, mtime) of what sits at `trigger` now, never following a link."""
        try:
            info = os.stat(NAME, dir_fd=self._current(), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino, info.st_mtime_ns)

    def pending(self) -> bool:
        found = self.identity()
        return found is not None and found not in self._ignored

    def read(self) -> BoundedRead:
        """The trigger's bytes (`contract.trigger.read` relative to the descriptor)."""
        return trigger_file.read(NAME, dir_fd=self._current())

    def remove(self, identity: Identity | None) -> bool:
        """Unlink the trigger if it is still the file `identity` names (any file when None).

        False when it is gone or another file took its place (the backend withdrew it, and
        may have written the next one): that one is left alone.
        """
        fd = self._current()
        try:
            info = os.stat(NAME, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if identity is not None and (info.st_dev, info.st_ino) != identity:
            return False
        try:
            if stat.S_ISDIR(info.st_mode):
                os.rmdir(NAME, dir_fd=fd)
            else:
                os.unlink(NAME, dir_fd=fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            # A non-empty folder planted as `trigger`: not ours to empty. Ignored from now on.
            logger.warning("cannot remove %s/%s (%s); ignoring it", self.path, NAME, exc.strerror)
            self._ignored.add((info.st_dev, info.st_ino, info.st_mtime_ns))
            return False
        with contextlib.suppress(OSError):
            os.fsync(fd)
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
