"""Container tests: the production files on a real Docker-API engine.

Opt-in, because they build images and start a stack (minutes, several GB): they run only
with OPENTRACE_CONTAINER_TESTS=1 and DOCKER_HOST set, e.g.

    eval "$(bash /work/shared/container-engine.sh)"     # as root; podman + runc
    OPENTRACE_CONTAINER_TESTS=1 .venv/bin/python -m pytest tests/containers -v

Otherwise every test here is skipped with the reason. Timings (image build, first
install, stack start) are printed at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.containers.stack import HealthRunner, Stack, copy_checkout

TIMINGS: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "containers: builds images and runs the stack on a container engine")


def _skip_reason() -> str | None:
    if os.environ.get("OPENTRACE_CONTAINER_TESTS") != "1":
        return "container tests are opt-in: set OPENTRACE_CONTAINER_TESTS=1 (and DOCKER_HOST)"
    if not os.environ.get("DOCKER_HOST"):
        return 'needs a container engine: eval "$(bash /work/shared/container-engine.sh)" sets DOCKER_HOST'
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            return f"needs {tool} on PATH"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        return f"the engine at DOCKER_HOST does not answer: {probe.stderr.strip()[:200]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    ours = [item for item in items if str(item.fspath).startswith(here)]
    if not ours:
        return
    reason = _skip_reason()
    for item in ours:
        item.add_marker(pytest.mark.containers)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Each build leaves superseded images dangling: remove them (this
    engine serves only these tests), so repeated runs do not fill the disk."""
    if _ran_here(session) and _skip_reason() is None:
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, timeout=600, check=False)


def _ran_here(session: pytest.Session) -> bool:
    here = os.path.dirname(__file__)
    return any(str(item.fspath).startswith(here) for item in session.items)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if TIMINGS:
        terminalreporter.section("container timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh copy of this checkout as its own compose project; torn down with its volumes."""
    project_dir = copy_checkout(tmp_path_factory.mktemp("checkout"))
    name = f"otc{uuid.uuid4().hex[:8]}"
    deployed = Stack(project_dir=project_dir, project_name=name, http_port=free_port(), timings=TIMINGS)
    runner = HealthRunner(name).start()
    try:
        yield deployed
    finally:
        deployed.down()
        runner.stop()
