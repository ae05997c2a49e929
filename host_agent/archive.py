"""The data-dir archive of a set: `python3 -m host_agent.archive DATA_DIR [--skip REL]…`, tar.gz on stdout.

The agent runs this as the data dir's owner (SPEC §5: files copied out of the data dir are
read as its owner would read them), so nothing the owner could not read itself can end up
in a set. The walk is also descriptor-based: every entry is opened with `O_NOFOLLOW`
relative to its parent's descriptor and archived from `fstat` of what was opened, so a
file swapped for a link between two looks is never followed; links are archived as links
(a restore refuses any that point outside). Sockets, FIFOs and devices are not data.
A summary line (JSON) goes to stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
import tarfile
from typing import BinaryIO

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class _Exactly:
    """Reads exactly `size` bytes from `fd`: a file that shrank while it was read is padded."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size
        self.padded = False

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        chunk = os.read(self.fd, n)
        if not chunk:
            self.padded = True
            chunk = b"\0" * n
        self.left -= len(chunk)
        return chunk


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    return info


class Walk:
    def __init__(self, tar: tarfile.TarFile, skip: set[str]) -> None:
        self.tar = tar
        self.skip = skip
        self.counts = {"files": 0, "dirs": 0, "links": 0, "skipped": 0, "unreadable": 0, "changed": 0}

    def directory(self, dir_fd: int, prefix: str) -> None:
        for name in sorted(os.listdir(dir_fd)):
            rel = f"{prefix}{name}"
            if rel in self.skip:
                continue
            self.entry(dir_fd, name, rel)

    def entry(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return  # removed while we walked (a lock, a temp file)
        except PermissionError:
            self.counts["unreadable"] += 1
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.link(dir_fd, name, rel)
                return
            # A socket (ENXIO), or a name changing under us (EINVAL mid-swap): not archived.
            self.counts["skipped"] += 1
            return
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                info = _info(rel, st)
                info.type = tarfile.DIRTYPE
                self.tar.addfile(info)
                self.counts["dirs"] += 1
                self.directory(fd, f"{rel}/")
            elif stat.S_ISREG(st.st_mode):
                info = _info(rel, st)
                info.size = st.st_size
                reader = _Exactly(fd, st.st_size)
                self.tar.addfile(info, reader)
                self.counts["files"] += 1
                self.counts["changed"] += reader.padded
            else:
                self.counts["skipped"] += 1
        finally:
            os.close(fd)

    def link(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            target = os.readlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return  # no longer a link when read (swapped back): the next backup takes it
            raise
        if not stat.S_ISLNK(st.st_mode):
            return  # swapped back meanwhile: the next backup takes it
        info = _info(rel, st)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        self.tar.addfile(info)
        self.counts["links"] += 1


def write_archive(root: str, skip: set[str], out: BinaryIO, root_fd: int | None = None) -> dict[str, int]:
    """The archive of `root`, or of the directory `root_fd` is open on (then `root` only names it).

    The agent opens the data dir as root and hands the descriptor over: its owner, whom this
    runs as, may not be allowed to look up the path (a parent directory only root can search).
    """
    if root_fd is None:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
            walk = Walk(tar, skip)
            walk.directory(root_fd, "")
    finally:
        os.close(root_fd)
    return walk.counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the data-dir archive of a backup set, tar.gz on stdout")
    parser.add_argument("data_dir")
    parser.add_argument("--skip", action="append", default=[], help="a path relative to DATA_DIR")
    parser.add_argument("--dir-fd", type=int, help="DATA_DIR, already open on this inherited descriptor")
    args = parser.parse_args(argv)
    try:
        counts = write_archive(args.data_dir, set(args.skip), sys.stdout.buffer, args.dir_fd)
    except OSError as exc:
        print(f"archiving {args.data_dir} failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.flush()
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
