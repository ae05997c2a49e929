"""Waiting for a trigger: inotify through ctypes where the kernel has it, a short poll otherwise.

`wait(timeout)` returns when something changed in the watched directory (or the timeout
passed); an idle agent sleeps in the kernel, so it uses next to no CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import time
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
POLL_INTERVAL = 0.5


class Watcher:
    def __init__(self, directory: Path, *, use_inotify: bool = True) -> None:
        self.directory = directory
        self.fd: int | None = None
        if use_inotify:
            self.fd = self._inotify(directory)

    @property
    def mode(self) -> str:
        return "inotify" if self.fd is not None else "poll"

    @staticmethod
    def _inotify(directory: Path) -> int | None:
        name = ctypes.util.find_library("c")
        if not name or not hasattr(os, "O_NONBLOCK"):
            return None
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            return None
        mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            os.close(fd)
            return None
        return int(fd)

    def wait(self, timeout: float) -> bool:
        """True when the directory may have changed; False when `timeout` passed quietly."""
        if self.fd is None:
            time.sleep(min(timeout, POLL_INTERVAL))
            return True
        # poll(), not select(): select() cannot watch a descriptor numbered 1024 or more.
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(max(0.0, timeout) * 1000):
            return False
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
