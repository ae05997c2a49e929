"""Fixtures of the end-to-end tests; the harness (`Site`, the registry, releases) is `testing/e2e.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testing.e2e import Site, make_base_upstream


@pytest.fixture(scope="session")
def base_upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree at v1.1.5 in an upstream repository, built once per session."""
    return make_base_upstream(tmp_path_factory.mktemp("e2e-base") / "upstream")


@pytest.fixture
def make_site(tmp_path: Path, base_upstream: Path) -> Iterator[Callable[[], Site]]:
    sites: list[Site] = []

    def make() -> Site:
        site = Site(tmp_path, base_upstream)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.stop()
