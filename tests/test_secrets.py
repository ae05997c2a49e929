"""Secrets generated into the data dir: created once, mode 0600, reused, never half-written."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from cryptography.fernet import Fernet

from opentrace import secrets


def test_it_creates_the_agent_secret_once_with_mode_0600(tmp_path):
    first = secrets.agent_secret(tmp_path)
    path = tmp_path / "secrets" / "agent_secret"
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert secrets.agent_secret(tmp_path) == first


def test_the_generated_secrets_key_is_a_working_fernet_key(tmp_path):
    (key,) = secrets.secrets_keys(tmp_path)
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"
    assert secrets.secrets_keys(tmp_path) == [key]


def test_processes_starting_together_agree_on_one_value(tmp_path):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(secrets.agent_secret(tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["agent_secret"]


def test_it_refuses_a_secret_file_readable_by_others(tmp_path):
    secrets.agent_secret(tmp_path)
    os.chmod(tmp_path / "secrets" / "agent_secret", 0o644)
    with pytest.raises(secrets.SecretFileError, match="readable by others"):
        secrets.agent_secret(tmp_path)


def test_it_refuses_a_symlinked_secret_file(tmp_path):
    (tmp_path / "secrets").mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("attacker-chosen-value-0123456789abcdef")
    os.chmod(target, 0o600)
    (tmp_path / "secrets" / "agent_secret").symlink_to(target)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        secrets.agent_secret(tmp_path)


def test_it_refuses_an_empty_secret_file_instead_of_using_it(tmp_path):
    (tmp_path / "secrets").mkdir(mode=0o700)
    path = tmp_path / "secrets" / "agent_secret"
    path.write_text("")
    os.chmod(path, 0o600)
    with pytest.raises(secrets.SecretFileError, match="empty"):
        secrets.agent_secret(tmp_path)


def test_settings_use_the_generated_secret_when_the_environment_has_none(settings):
    path = settings.DATA_DIR / "secrets" / "agent_secret"
    if os.environ.get("OPENTRACE_AGENT_SECRET"):
        pytest.skip("OPENTRACE_AGENT_SECRET is set in this environment")
    assert path.read_text().strip() == settings.OPENTRACE_AGENT_SECRET
