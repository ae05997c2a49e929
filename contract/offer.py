"""Which release the registry offers this install (SPEC §4.1-4.2): the newest above the running one.

A release is offered here when it is on our channel (or stable), newer than the running
version, not `withdrawn`, and this install's rollout bucket is below its `rollout`
percentage (`contract.rollout`). A release out of reach by `min_upgrade_from` is still the
one offered; `path` then names the hops that reach it (each within the previous one's reach).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from contract.registry import Release, parse_version
from contract.rollout import in_rollout


@dataclass(frozen=True)
class Offer:
    """What the registry offers this install."""

    latest: Release | None  # the newest release above the running version offered here
    installable: bool  # min_upgrade_from is met
    intermediate: Release | None  # when not installable: the newest release we can install first
    skipped: bool  # an admin chose to skip `latest`
    # The releases to install one after the other to reach `latest` (just `latest` when it
    # is installable; empty when no chain of offered releases reaches it).
    path: tuple[Release, ...] = ()
    # The newest release above `latest` that exists but is not offered here yet (rollout).
    held_back: Release | None = None

    @property
    def update_available(self) -> bool:
        return self.latest is not None and not self.skipped


def _same_version(a: str, b: str) -> bool:
    va, vb = parse_version(a), parse_version(b)
    return va is not None and va == vb


def reachable_from(release: Release, running: str) -> bool:
    """True when `release` may be installed over `running` (its min_upgrade_from is met)."""
    current = parse_version(running)
    minimum = parse_version(release.min_upgrade_from) if release.min_upgrade_from else None
    return current is not None and (minimum is None or current >= minimum)


def upgrade_path(candidates: Iterable[Release], *, running: str, target: Release) -> tuple[Release, ...]:
    """The hops from `running` to `target`: each time the newest candidate within reach.

    Greedy by the newest reachable release, which gives the fewest hops when every
    release's minimum is no higher than the next one's (how publishers set them). Empty
    when no chain reaches `target`.
    """
    ordered = sorted(
        (r for r in candidates if r.parsed_version <= target.parsed_version), key=lambda r: r.parsed_version
    )
    hops: list[Release] = []
    current = running
    while True:
        if reachable_from(target, current):
            return (*hops, target)
        here = parse_version(current)
        step = [
            r for r in ordered if here is not None and r.parsed_version > here and reachable_from(r, current)
        ]
        if not step or step[-1].parsed_version >= target.parsed_version:
            return ()
        hops.append(step[-1])
        current = step[-1].version


def select_offer(
    releases: Iterable[Release],
    *,
    running: str,
    channel: str,
    skipped: Collection[str] = (),
    bucket: int | None = None,
) -> Offer:
    """The release to offer: newest on `channel` (stable releases reach every channel).

    `bucket` is this install's rollout bucket (0-99); None offers every rollout percentage
    above zero (a caller that has no install id, e.g. a publisher's preview).
    """
    current = parse_version(running)
    if current is None:
        return Offer(None, False, None, False)
    newer = sorted(
        (
            r
            for r in releases
            if r.channel in (channel, "stable") and r.parsed_version > current and not r.withdrawn
        ),
        key=lambda r: r.parsed_version,
    )
    offered = [r for r in newer if in_rollout(r.rollout, bucket)]
    held = [r for r in newer if not in_rollout(r.rollout, bucket)]
    if not offered:
        return Offer(None, False, None, False, held_back=held[-1] if held else None)
    latest = offered[-1]
    later = [r for r in held if r.parsed_version > latest.parsed_version]

    installable = reachable_from(latest, running)
    intermediate = None
    if not installable:
        stepping = [r for r in offered[:-1] if reachable_from(r, running)]
        intermediate = stepping[-1] if stepping else None
    is_skipped = any(_same_version(latest.version, s) for s in skipped)
    path = upgrade_path(offered, running=running, target=latest)
    return Offer(latest, installable, intermediate, is_skipped, path, later[-1] if later else None)
