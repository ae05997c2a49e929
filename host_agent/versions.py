"""PEP 440-ish version comparison without third-party packages (the agent runs on the host).

Releases are `N(.N)*` with an optional pre-release (`a`, `b`, `rc`) suffix and leading `v`;
that covers every version this project publishes. Anything else does not parse.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^[vV]?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|rc|alpha|beta|c)[-_.]?(\d*))?$")
_PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2}


def parse_version(text: str) -> tuple[tuple[int, ...], tuple[int, int]] | None:
    match = _VERSION.match(text.strip())
    if not match:
        return None
    release = tuple(int(p) for p in match.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    # A final release sorts after its pre-releases.
    pre = (_PRE[match.group(2).lower()], int(match.group(3) or 0)) if match.group(2) else (9, 0)
    return release, pre


def compare(a: str, b: str) -> int:
    """-1, 0 or 1; raises ValueError when either does not parse."""
    pa, pb = parse_version(a), parse_version(b)
    if pa is None or pb is None:
        raise ValueError(f"not a version: {a if pa is None else b!r}")
    return (pa > pb) - (pa < pb)
