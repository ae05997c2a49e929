"""`flock`-based exclusion: one agent process per data dir, one update (or backup) at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from host_agent.errors import AgentError


class LockHeld(AgentError):
    """Another agent process holds the lock."""


class FileLock:
    """Held until released or the process dies: the kernel drops a flock with its holder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, *, blocking: bool = False) -> FileLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # A link or a folder where the lock belongs: a clear refusal, not a crash loop.
            raise LockHeld(f"{self.path} cannot be opened as a lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(f"{self.path} is held by another agent process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
