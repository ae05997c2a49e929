"""`contract.files`: the bounded no-follow read and the atomic write, against what a hostile
owner of the data dir can plant there."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from contract import files

LIMIT = 1024


@pytest.fixture
def directory(tmp_path):
    folder = tmp_path / "updates"
    folder.mkdir()
    return folder


def test_a_regular_file_is_read_whole_with_its_identity(directory):
    path = directory / "trigger"
    path.write_bytes(b"x" * LIMIT)
    got = files.read_bounded(path, limit=LIMIT)
    info = os.stat(path)
    assert got.data == b"x" * LIMIT
    assert got.identity == (info.st_dev, info.st_ino)


def test_it_reads_relative_to_a_directory_descriptor(directory):
    (directory / "trigger").write_bytes(b"{}")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert files.read_bounded("trigger", limit=LIMIT, dir_fd=fd).data == b"{}"
        (directory / "link").symlink_to(directory / "trigger")
        with pytest.raises(files.UnsafeFile, match="symbolic link"):
            files.read_bounded("link", limit=LIMIT, dir_fd=fd)
    finally:
        os.close(fd)


def test_a_symbolic_link_is_not_followed(directory, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root only")
    (directory / "trigger").symlink_to(secret)
    with pytest.raises(files.UnsafeFile, match="the trigger is a symbolic link"):
        files.read_bounded(directory / "trigger", limit=LIMIT, what="the trigger")


def test_a_fifo_is_refused_without_blocking(directory):
    os.mkfifo(directory / "trigger")
    outcome: list[object] = []

    def read() -> None:
        try:
            files.read_bounded(directory / "trigger", limit=LIMIT)
        except files.UnsafeFile as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # release the reader before failing, so the suite itself never hangs
        os.close(os.open(directory / "trigger", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO blocked the reader")
    assert "not a regular file" in str(outcome[0])


def test_a_directory_is_refused(directory):
    (directory / "trigger").mkdir()
    with pytest.raises(files.UnsafeFile, match="not a regular file"):
        files.read_bounded(directory / "trigger", limit=LIMIT)


def test_a_second_hard_link_is_refused(directory, tmp_path):
    other = tmp_path / "other"
    other.write_bytes(b"{}")
    os.link(other, directory / "trigger")
    with pytest.raises(files.UnsafeFile, match="2 hard links"):
        files.read_bounded(directory / "trigger", limit=LIMIT)


def test_one_byte_over_the_limit_is_refused(directory):
    (directory / "trigger").write_bytes(b"x" * (LIMIT + 1))
    with pytest.raises(files.UnsafeFile, match=f"limit {LIMIT}"):
        files.read_bounded(directory / "trigger", limit=LIMIT)


def test_a_missing_file_is_file_not_found(directory):
    with pytest.raises(FileNotFoundError):
        files.read_bounded(directory / "trigger", limit=LIMIT)


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_the_atomic_write_has_the_mode_asked_for_whatever_the_umask(directory, umask):
    previous = os.umask(umask)
    try:
        files.write_atomic(directory / "trigger", b"{}", mode=0o640)
    finally:
        os.umask(previous)
    info = os.lstat(directory / "trigger")
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (directory / "trigger").read_bytes() == b"{}"
    assert [p.name for p in directory.iterdir()] == ["trigger"]


def test_the_atomic_write_replaces_what_was_there(directory):
    (directory / "trigger").write_bytes(b"old")
    files.write_atomic(directory / "trigger", b"new", mode=0o600)
    assert (directory / "trigger").read_bytes() == b"new"


def test_a_link_planted_at_the_temporary_name_is_not_followed(directory, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: "fixed")
    (directory / ".trigger.fixed.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        files.write_atomic(directory / "trigger", b"{}", mode=0o640)
    assert victim.read_text() == "keep"
    assert not (directory / "trigger").exists()


def test_a_failed_write_leaves_no_temporary_file(directory):
    (directory / "trigger").mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(IsADirectoryError):
        files.write_atomic(directory / "trigger", b"{}", mode=0o640)
    assert [p.name for p in directory.iterdir()] == ["trigger"]
