"""`<DATA_DIR>/updates/` stays writable by the app when the agent runs as root (compose installs)."""

from __future__ import annotations

import os

import pytest

from host_agent.agent import prepare_updates_dir
from host_agent.config import AgentConfig

APP_UID = 10001

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


def config_for(tmp_path) -> AgentConfig:
    return AgentConfig(
        project_dir=tmp_path,
        data_dir=tmp_path / "data",
        backend_url="http://127.0.0.1:1",
        secret="s",
        preset="compose",
    )


@root_only
def test_a_root_agent_creates_the_updates_folder_for_the_data_dirs_owner(tmp_path):
    config = config_for(tmp_path)
    config.data_dir.mkdir()
    os.chown(config.data_dir, APP_UID, APP_UID)

    prepare_updates_dir(config)

    info = config.updates_dir.stat()
    assert (info.st_uid, info.st_gid) == (APP_UID, APP_UID)
    assert info.st_mode & 0o700 == 0o700  # the owner, the app's user, may write triggers


@root_only
def test_a_folder_a_root_agent_made_earlier_is_given_back(tmp_path):
    config = config_for(tmp_path)
    config.updates_dir.mkdir(parents=True)  # root-owned, as agents before this fix left it
    os.chown(config.data_dir, APP_UID, APP_UID)

    prepare_updates_dir(config)

    assert config.updates_dir.stat().st_uid == APP_UID


@root_only
def test_a_linked_updates_folder_is_not_followed(tmp_path):
    config = config_for(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config.data_dir.mkdir()
    os.chown(config.data_dir, APP_UID, APP_UID)
    config.updates_dir.symlink_to(elsewhere)

    prepare_updates_dir(config)

    assert elsewhere.stat().st_uid == 0
