"""OPENTRACE_TRACKING_BUFFER is read in opentrace/config.py; a malformed value stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from opentrace.config import ConfigError, load_config


def test_the_default_is_the_spool(tmp_path: Path):
    assert load_config({}, tmp_path).tracking_buffer == "spool"


@pytest.mark.parametrize("value", ["redis://redis:6379/1", "rediss://u:p@cache.example:6380/0", "spool"])
def test_a_redis_url_or_spool_is_accepted(tmp_path: Path, value):
    assert load_config({"OPENTRACE_TRACKING_BUFFER": value}, tmp_path).tracking_buffer == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("disk", "expected 'spool' or a redis:// URL"),
        ("http://redis:6379", "expected 'spool' or a redis:// URL"),
        ("redis://", "expected 'spool' or a redis:// URL"),
        ("redis://redis:port/1", "port is not a number"),
        ("redis://redis:6379/one", "must be a number"),
    ],
)
def test_a_malformed_value_names_the_variable(tmp_path: Path, value, problem):
    with pytest.raises(ConfigError, match=f"OPENTRACE_TRACKING_BUFFER: .*{problem}"):
        load_config({"OPENTRACE_TRACKING_BUFFER": value}, tmp_path)
