"""Secrets the app needs but did not get from the environment, generated once into the data dir.

`OPENTRACE_AGENT_SECRET` and `OPENTRACE_SECRETS_KEY` have no safe default. When unset, the
first process to start writes a fresh value to `<DATA_DIR>/secrets/<name>` (mode 0600,
created with O_EXCL so two processes starting together agree on one value) and every later
process, the host agent included, reads the same file.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

AGENT_SECRET_FILE = "agent_secret"  # noqa: S105 - a file name
DJANGO_SECRET_KEY_FILE = "django_secret_key"  # noqa: S105 - a file name
SECRETS_KEY_FILE = "secrets_key"


class SecretFileError(RuntimeError):
    pass


def secrets_dir(data_dir: Path) -> Path:
    return data_dir / "secrets"


def _read(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "r", encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretFileError(
                f"{path} is readable by others (mode {oct(info.st_mode & 0o777)}); chmod 600 it"
            )
        value = handle.read().strip()
    if not value:
        raise SecretFileError(f"{path} is empty; delete it to have a new secret generated")
    return value


def load_or_create(data_dir: Path, name: str, generate: Callable[[], str]) -> str:
    directory = secrets_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    value = generate()
    tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails when another process got there first: its value wins, ours is dropped.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read(path)
    finally:
        tmp.unlink(missing_ok=True)
    return value


def agent_secret(data_dir: Path) -> str:
    return load_or_create(data_dir, AGENT_SECRET_FILE, lambda: secrets.token_urlsafe(48))


def secrets_keys(data_dir: Path) -> list[str]:
    return [load_or_create(data_dir, SECRETS_KEY_FILE, lambda: Fernet.generate_key().decode())]


def secret_key(data_dir: Path) -> str:
    """Django's SECRET_KEY when the environment sets none (sessions, password reset links)."""
    return load_or_create(data_dir, DJANGO_SECRET_KEY_FILE, lambda: secrets.token_urlsafe(50))


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (a file the app creates later,
    such as the SQLite database, then keeps that mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    os.close(fd)
