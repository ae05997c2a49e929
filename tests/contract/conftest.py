"""Fixtures for the contract tests: both sides of the protocol, each through its real entry point.

The backend side is `updates.checking.run_check()` against a registry server on 127.0.0.1
(the code path of the scheduled check and "Check now"); the agent side is the real
`python -m host_agent once` on a trigger carrying the same document, against the agent
tests' fake project and the fake backend written from SPEC §6.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The agent's fixtures (a real git project and a SPEC §6 backend), shared with its own tests.
from host_agent.tests.conftest import backend, project  # noqa: F401
from tests.updates.registry_server import RegistryServer, start_registry_server


@pytest.fixture
def registry_server(settings, tmp_path) -> Iterator[RegistryServer]:
    settings.OPENTRACE_REGISTRY_KEYS = {}
    settings.OPENTRACE_VERSION = "1.1.5"
    settings.OPENTRACE_CHANNEL = "stable"
    settings.OPENTRACE_UPDATES_DIR = tmp_path / "backend-updates"
    server = start_registry_server()
    settings.OPENTRACE_REGISTRY_URL = server.url("/version.json")
    yield server
    server.server.shutdown()
    server.server.server_close()
