"""Backups and restores against a data dir the web app owns (issue 16): the real agent and
`restore_all.py` run as root, every attacker step runs as the app's uid (10001).

What must hold: no file the app's uid cannot read gets into a set, sets are private whatever
the umask, a restore never writes outside the data dir, and a refused restore changes nothing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from host_agent.backup import helper_python
from testing.agent import restore, run_agent

APP_UID = 10001
SECRET = b"root-only secret: do not copy me"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the agent as root against another uid")


def give_to_app(path: Path) -> None:
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, APP_UID, APP_UID)
        for name in files:
            os.chown(os.path.join(folder, name), APP_UID, APP_UID, follow_symlinks=False)


@pytest.fixture
def tmp_path():
    """A folder the app's uid can enter (pytest's own are 0700, and other sessions reset them)."""
    folder = Path(tempfile.mkdtemp(prefix="opentrace-hostile-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hostile(project, tmp_path):
    """The project's data dir owned by the app's uid, and a root-only file beside it."""
    project.checkout.chmod(0o755)
    (project.data_dir / "uploads").mkdir()
    (project.data_dir / "uploads" / "logo.png").write_bytes(b"\x89PNG original")
    give_to_app(project.data_dir)
    secret = tmp_path / "root-only"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return secret


def as_app(script: str, *args: str) -> subprocess.Popen:
    """An attacker step: a Python script run as the app's uid."""
    return subprocess.Popen(
        [helper_python((APP_UID, APP_UID)), "-c", textwrap.dedent(script), *args],
        user=APP_UID,
        group=APP_UID,
        extra_groups=[],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"},
        stderr=subprocess.PIPE,
    )


# Swaps NAME and a link to TARGET back and forth (renameat2 RENAME_EXCHANGE) until STOP exists.
SWAPPER = """
    import ctypes, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    folder, name, target, stop = sys.argv[1:5]
    os.chdir(folder)
    os.symlink(target, name + ".link")
    deadline = time.monotonic() + 60
    while not os.path.exists(stop) and time.monotonic() < deadline:
        libc.renameat2(-100, name.encode(), -100, (name + ".link").encode(), 2)
"""


def backup(project, backend) -> subprocess.CompletedProcess:
    """`python -m host_agent backup` as root, with a state dir of this test's own.

    As root against another uid's data dir the agent's default state dir is the host's
    /var/lib/opentrace-agent, whose run lock parallel tests (and other checkouts) would share.
    """
    state_dir = project.checkout.parent / "agent-state"
    return run_agent(project, backend, "backup", OPENTRACE_AGENT_STATE_DIR=str(state_dir))


def members(set_dir: Path) -> dict[str, bytes]:
    found = {}
    with tarfile.open(set_dir / "data.tar.gz") as archive:
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            found[member.name] = handle.read() if handle else b""
    return found


def test_a_set_is_private_even_when_the_backup_is_run_by_hand_with_umask_022(project, backend, hostile):
    old = os.umask(0o022)
    try:
        done = backup(project, backend)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    set_dir = Path(done.stdout.strip())

    assert stat.S_IMODE((project.data_dir / "backups").stat().st_mode) == 0o700
    assert stat.S_IMODE(set_dir.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in set_dir.rglob("*") if p.is_file()}
    assert modes
    assert set(modes.values()) == {0o600}, modes


def test_the_data_dir_is_archived_as_its_owner_even_below_a_folder_only_root_can_search(
    project, backend, hostile, tmp_path
):
    # As on the container stack, where the install sits in pytest's 0700 folder, or a
    # project in /root: the owner cannot look up the path, so the agent hands it the directory.
    tmp_path.chmod(0o700)
    done = backup(project, backend)
    assert done.returncode == 0, done.stderr
    found = members(Path(done.stdout.strip()))
    assert found["uploads/logo.png"] == b"\x89PNG original"
    assert SECRET not in b"".join(found.values())


def test_a_restore_as_root_gives_the_restored_data_dir_to_its_owner(project, backend, hostile):
    (project.data_dir / "uploads" / "inner").mkdir()
    (project.data_dir / "uploads" / "inner" / "kept.txt").write_bytes(b"kept")
    (project.data_dir / "uploads" / "relative-link").symlink_to("logo.png")
    give_to_app(project.data_dir)
    done = backup(project, backend)
    assert done.returncode == 0, done.stderr

    restored = restore(project, Path(done.stdout.strip()))

    assert restored.returncode == 0, restored.stderr
    uploads = project.data_dir / "uploads"
    for path in (
        project.data_dir,
        uploads,
        uploads / "inner",
        uploads / "inner" / "kept.txt",
        uploads / "logo.png",
    ):
        assert (path.stat().st_uid, path.stat().st_gid) == (APP_UID, APP_UID), path
    link = os.lstat(uploads / "relative-link")
    assert stat.S_ISLNK(link.st_mode)
    assert (link.st_uid, link.st_gid) == (APP_UID, APP_UID)


def test_a_file_swapped_for_a_link_during_the_backup_walk_never_brings_a_root_only_file_in(
    project, backend, hostile
):
    uploads = project.data_dir / "uploads"
    # Many files to walk, and one that keeps being swapped with a link to the root-only file.
    for n in range(300):
        (uploads / f"f{n:03}").write_bytes(b"x" * 100)
    (uploads / "bait").write_bytes(b"harmless")
    (uploads / "planted").symlink_to(hostile)
    give_to_app(project.data_dir)
    stop = project.data_dir / "stop"
    swapper = as_app(SWAPPER, str(uploads), "bait", str(hostile), str(stop))
    try:
        time.sleep(0.3)
        sets = []
        for _ in range(3):
            done = backup(project, backend)
            assert done.returncode == 0, done.stderr
            sets.append(Path(done.stdout.strip()))
    finally:
        stop.touch()
        swapper.wait(timeout=30)

    for set_dir in sets:
        archived = members(set_dir)
        assert not any(SECRET in content for content in archived.values())
        assert "uploads/f000" in archived
        # The planted link is archived as what it is, a link (a restore refuses it).
        assert "uploads/planted" in archived
        assert archived["uploads/planted"] == b""


def test_a_planted_outward_link_refuses_the_restore_and_changes_nothing(project, backend, hostile):
    (project.data_dir / "uploads" / "escape").symlink_to("/etc")
    give_to_app(project.data_dir)
    done = backup(project, backend)
    assert done.returncode == 0, done.stderr
    set_dir = Path(done.stdout.strip())
    with sqlite3.connect(project.data_dir / "opentrace.sqlite3") as db:
        db.execute("UPDATE notes SET text = 'written after the backup'")
    (project.data_dir / "uploads" / "logo.png").write_bytes(b"changed after the backup")

    dry = restore(project, set_dir, "--dry-run")
    real = restore(project, set_dir)

    for attempt in (dry, real):
        assert attempt.returncode == 1, attempt.stdout
        assert "uploads/escape" in attempt.stderr
        assert "nothing restored" in attempt.stderr
        assert "Traceback" not in attempt.stderr
    # Refused before anything was touched: the database and the files are as they were.
    assert project.db_rows() == [(1, "written after the backup")]
    assert (project.data_dir / "uploads" / "logo.png").read_bytes() == b"changed after the backup"
    assert not list(project.checkout.glob(".data.restore-*"))


def test_a_directory_swapped_for_a_link_during_the_restore_is_never_written_through(
    project, backend, hostile, tmp_path
):
    done = backup(project, backend)
    assert done.returncode == 0, done.stderr
    set_dir = Path(done.stdout.strip())
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "kept").write_text("root's")
    before = sorted(p.name for p in victim.iterdir())
    stop = tmp_path / "stop"
    swapper = as_app(SWAPPER, str(project.data_dir), "uploads", str(victim), str(stop))
    try:
        time.sleep(0.3)
        restored = restore(project, set_dir)
    finally:
        stop.touch()
        swapper.wait(timeout=30)

    assert restored.returncode == 0, restored.stderr
    assert sorted(p.name for p in victim.iterdir()) == before
    assert (victim / "kept").read_text() == "root's"
    # The restored data dir is the set's, still the app's.
    assert (project.data_dir / "uploads" / "logo.png").read_bytes() == b"\x89PNG original"
    assert project.data_dir.stat().st_uid == APP_UID


def test_a_set_the_app_planted_is_not_restored(project, backend, hostile):
    done = backup(project, backend)
    assert done.returncode == 0, done.stderr
    real = Path(done.stdout.strip())
    forged = project.data_dir / "forged"
    subprocess.run(["cp", "-a", str(real), str(forged)], check=True)
    give_to_app(forged)

    attempt = restore(project, forged)

    assert attempt.returncode == 1
    assert "belongs to uid 10001" in attempt.stderr


def test_a_sqlite_file_swapped_for_a_link_to_a_root_only_database_is_refused(
    project, backend, hostile, tmp_path
):
    root_db = tmp_path / "root-only.sqlite3"
    with sqlite3.connect(root_db) as db:
        db.execute("CREATE TABLE secrets (value TEXT)")
        db.execute("INSERT INTO secrets VALUES ('root only')")
    root_db.chmod(0o600)
    live = project.data_dir / "opentrace.sqlite3"
    live.unlink()
    live.symlink_to(root_db)

    done = backup(project, backend)

    assert done.returncode == 1
    assert "a link is never followed" in done.stderr
    assert not list((project.data_dir / "backups").iterdir())
