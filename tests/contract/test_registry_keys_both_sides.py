"""`OPENTRACE_REGISTRY_KEYS` (SPEC §3, §8): the backend's and the agent's configuration read it alike.

Both loaders call `contract.keys`; a malformed value stops either with its own configuration
error naming the variable.
"""

from __future__ import annotations

import base64

import pytest

from host_agent import config as agent_config
from host_agent import errors as agent_errors
from opentrace import config as backend_config
from testing.agent import SECRET

K32 = base64.b64encode(bytes(range(32))).decode()
OTHER = base64.b64encode(bytes(range(1, 33))).decode()


def backend_keys(value: str, tmp_path) -> dict[str, bytes]:
    environ = {"OPENTRACE_DATA_DIR": str(tmp_path / "data"), "OPENTRACE_REGISTRY_KEYS": value}
    return backend_config.load_config(environ, tmp_path).registry_keys


def agent_keys(value: str, tmp_path) -> dict[str, bytes]:
    environ = {
        "OPENTRACE_PROJECT_DIR": str(tmp_path),
        "OPENTRACE_AGENT_SECRET": SECRET,
        "OPENTRACE_REGISTRY_KEYS": value,
    }
    return agent_config.load_config({}, environ).registry_keys


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("", {}),
        (f"k1:{K32}", {"k1": bytes(range(32))}),
        (f" k1:{K32} , k-2.b_3:{OTHER} ,", {"k1": bytes(range(32)), "k-2.b_3": bytes(range(1, 33))}),
    ],
    ids=["unset", "one", "two-with-spaces"],
)
def test_both_read_the_same_keys(tmp_path, value, keys):
    assert backend_keys(value, tmp_path) == agent_keys(value, tmp_path) == keys


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (K32, "expected keyid:base64 pairs"),
        (f"bad id:{K32}", "expected keyid:base64 pairs"),
        ("k1:not*base64", "not valid base64"),
        (f"k1:{base64.b64encode(bytes(31)).decode()}", "not a 32-byte Ed25519 public key"),
        (f"k1:{K32},k1:{OTHER}", "appears twice"),
    ],
    ids=["no-keyid", "keyid-with-space", "not-base64", "31-bytes", "duplicate-keyid"],
)
def test_both_refuse_the_same_values_naming_the_variable(tmp_path, value, problem):
    with pytest.raises(backend_config.ConfigError) as backend_refused:
        backend_keys(value, tmp_path)
    with pytest.raises(agent_errors.ConfigError) as agent_refused:
        agent_keys(value, tmp_path)

    for refusal in (backend_refused.value, agent_refused.value):
        assert str(refusal).startswith("OPENTRACE_REGISTRY_KEYS: ")
        assert problem in str(refusal)
