"""Directory-descriptor helpers for the backup sets and their restore (SPEC §5 trust boundary).

The data dir belongs to the web app's uid, which can rename anything in it at any moment.
So a path below it is looked up once, each component with `O_NOFOLLOW`, and work continues
relative to the descriptor; tools that want a path get `/proc/self/fd/<fd>`, which names the
directory opened whatever is renamed meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
RENAME_EXCHANGE = 2


class Unsafe(Exception):
    pass


def fd_path(fd: int, name: str | None = None) -> Path:
    base = Path(f"/proc/self/fd/{fd}")
    return base / name if name else base


def _open_directory(name: str | Path, complaint: str, dir_fd: int | None = None) -> int:
    """`os.open` of a directory that must not be a link; `Unsafe(complaint)` when it is one."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Unsafe(complaint) from None
        raise


def open_dir(path: Path) -> int:
    """Open an existing directory; the last component must not be a link."""
    return _open_directory(path, f"{path} is not a directory (a link or a file is there)")


def open_below(root_fd: int, relative: Path) -> int:
    """Open `relative` below `root_fd`, following no link at any component."""
    fd = os.dup(root_fd)
    try:
        for part in relative.parts:
            if part in ("", ".", ".."):
                raise Unsafe(f"{relative}: not a plain relative path")
            child = _open_directory(part, f"{relative}: {part} is a link or not a directory", fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def private_dir(parent_fd: int, name: str, *, what: str) -> int:
    """`name` below `parent_fd` as a directory only this uid can enter (created 0700, or made so)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    fd = _open_directory(name, f"{what} is a link or not a directory", parent_fd)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise Unsafe(
            f"{what} belongs to uid {info.st_uid}, not to this agent (uid {os.geteuid()}): move it aside"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def create_private(dir_fd: int, name: str) -> int:
    """A new file only this uid can read, whatever the umask."""
    fd = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
    )
    os.fchmod(fd, 0o600)
    return fd


_libc = ctypes.CDLL(None, use_errno=True)


def exchange(dir_fd: int, first: str, second: str) -> None:
    """Swap two names in one directory atomically (renameat2 RENAME_EXCHANGE)."""
    done = _libc.renameat2(
        ctypes.c_int(dir_fd),
        first.encode(),
        ctypes.c_int(dir_fd),
        second.encode(),
        ctypes.c_uint(RENAME_EXCHANGE),
    )
    if done != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"renameat2({first}, {second}, RENAME_EXCHANGE): {os.strerror(code)}")


def open_subdir(root: Path, relative: Path, *, create_owner: tuple[int, int] | None = None) -> int:
    """`root`/`relative` opened without following a link at any component below `root`.

    A missing last component is created (0755, handed to `create_owner` when given, so the
    app that owns the data dir can still write there).
    """
    root_fd = open_dir(root)
    try:
        parent = open_below(root_fd, relative.parent) if relative.parent != Path(".") else os.dup(root_fd)
    finally:
        os.close(root_fd)
    try:
        try:
            os.mkdir(relative.name, 0o755, dir_fd=parent)
        except FileExistsError:
            pass
        else:
            if create_owner is not None:
                os.chown(relative.name, *create_owner, dir_fd=parent, follow_symlinks=False)
        return _open_directory(relative.name, f"{relative}: a link or not a directory", parent)
    finally:
        os.close(parent)


def replace_file(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644) -> None:
    """`name` in the open directory replaced atomically by a new file holding `data`.

    The new file is created under a random name with `O_EXCL|O_NOFOLLOW` and renamed over
    `name`: whatever another process planted at `name` (a link, a FIFO) is replaced, never
    followed or written through.
    """
    tmp = f".{name}.{os.urandom(8).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def remove_name(dir_fd: int, name: str) -> bool:
    """Unlink `name` in the open directory (a link itself, never its target); False when absent."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise Unsafe(f"{name} is a directory") from None
    return True
