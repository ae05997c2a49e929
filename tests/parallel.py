"""How `make test` shares the suite out among pytest-xdist workers (`-n N --dist loadgroup`).

Every test is its own unit of work, handed to whichever worker is free, except the tests
under a folder in SERIAL_GROUPS: those form one unit, run in order on one worker.

The grouping goes by folder here rather than by `xdist_group` marks: pytest-xdist 3.8 groups
marked tests by rewriting `item._nodeid`, which pytest 9 no longer reads, so the marks would
silently group nothing.
"""

from __future__ import annotations

from typing import Any

# nodeid prefix (relative to the repository root) -> group
SERIAL_GROUPS = {
    # One live site (an OpenTrace install with its agent, a registry, Chromium) serves the
    # whole folder and takes from 10 s to most of a minute to start: one worker starts it once.
    "tests/browser/": "browser-site",
    # They build images and run stacks on the one container engine of the machine
    # (`make container-test` runs them serially anyway).
    "tests/containers/": "container-engine",
}


def group_of(nodeid: str) -> str | None:
    for prefix, group in SERIAL_GROUPS.items():
        if nodeid.startswith(prefix):
            return group
    return None


def make_scheduler(config: Any, log: Any) -> Any:
    """xdist's loadgroup scheduler, with the groups above (the largest unit is sent first)."""
    from xdist.scheduler import LoadGroupScheduling

    class FolderGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or super()._split_scope(nodeid)

    return FolderGroupScheduling(config, log)
