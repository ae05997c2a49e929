"""The writer lock: one flusher at a time, whichever process or container it runs in.

An exclusive `flock` on `<DATA_DIR>/tracking/flusher.lock`. Every process that can flush
mounts the same data dir (the compose services share `./data`), the kernel drops the lock
when its holder dies, and waiting for it costs nothing: a second flusher started during a
deploy waits until the first one exits.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(
        self,
        *,
        timeout: float | None,
        should_stop: Callable[[], bool] = lambda: False,
        poll: float = 0.5,
    ) -> bool:
        """True once held; False after `timeout` seconds (None: no limit) or when asked to stop."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if should_stop() or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    return False
                time.sleep(poll)
                continue
            self._fd = fd
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
