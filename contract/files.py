"""File primitives for the data dir the backend and the agent share (SPEC §5).

Whoever controls the web app can plant anything in `<DATA_DIR>/updates/`: a symbolic link,
a FIFO, a directory, a hard link to another file, a file that keeps growing. `read_bounded()`
opens without following links and without blocking, and accepts only a regular file with
one link and at most `limit` bytes. `write_atomic()` never follows or reuses a name another
process planted, and a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 64 * 1024


class UnsafeFile(Exception):
    """What sits at the path is not a file that may be read; the message says what it is."""


@dataclass(frozen=True)
class BoundedRead:
    data: bytes
    identity: tuple[int, int]  # (st_dev, st_ino) of the file read, to notice a later swap


def read_bounded(
    path: str | Path, *, limit: int, dir_fd: int | None = None, what: str = "the file"
) -> BoundedRead:
    """Read a regular, singly linked file of at most `limit` bytes, never following a link.

    With `dir_fd`, `path` is relative to that open directory. `UnsafeFile` for a link, anything
    but a regular file, extra hard links or too many bytes; `FileNotFoundError` (and other
    `OSError`s) as the system reports them.
    """
    # O_NONBLOCK: opening a FIFO planted at the path must not hang the reader.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{what} is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{what} is not a regular file")
        if info.st_nlink != 1:
            raise UnsafeFile(f"{what} has {info.st_nlink} hard links (expected 1)")
        if info.st_size > limit:
            raise UnsafeFile(f"{what} is {info.st_size} bytes (limit {limit})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnsafeFile(f"{what} grew past {limit} bytes while being read")
        return BoundedRead(b"".join(chunks), (info.st_dev, info.st_ino))
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make a rename or an unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` with `data`: a fresh temp file beside it, fsync, `os.replace`, fsync of the dir.

    The temp file is created with `O_CREAT|O_EXCL|O_NOFOLLOW` under a random name, so a link
    or file planted there makes the write fail (`FileExistsError`) instead of being followed;
    its mode is `mode` whatever the umask. Nothing is left behind on failure.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must neither widen nor narrow what readers expect
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)
