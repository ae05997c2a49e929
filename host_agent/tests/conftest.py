"""Fixtures for the agent's tests: a fake project in real git and a SPEC §6 backend.

The harness itself (the fake project, the fake backend, signed triggers, running the agent)
is `testing/agent.py`; the tests import it from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.agent import FakeBackend, Project, make_project, serve_backend


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The fake app checked out at 1.1.5, with 1.2.0 tagged upstream."""
    return make_project(tmp_path)


@pytest.fixture
def backend(project: Project) -> Iterator[FakeBackend]:
    with serve_backend(project) as state:
        yield state
