"""Fixtures for the contract tests: both sides of the protocol, each through its real entry point.

The backend side is `updates.checking.run_check()` against a registry server on 127.0.0.1
(the code path of the scheduled check and "Check now"); the agent side is the real
`python -m host_agent once` on a trigger carrying the same document, against the agent
tests' fake project and the fake backend written from SPEC §6.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.agent import FakeBackend, Project, make_project, serve_backend
from testing.policies import update_defaults
from testing.registry_server import RegistryServer, serving_registry


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The agent tests' fake app in real git, checked out at 1.1.5, with 1.2.0 tagged upstream."""
    return make_project(tmp_path)


@pytest.fixture
def backend(project: Project) -> Iterator[FakeBackend]:
    """The agent tests' backend written from SPEC §6, for `project`."""
    with serve_backend(project) as state:
        yield state


@pytest.fixture
def registry_server(settings, tmp_path) -> Iterator[RegistryServer]:
    update_defaults(settings, tmp_path / "backend-updates")
    with serving_registry(settings) as server:
        yield server
