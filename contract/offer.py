"""Which release the registry offers this install (SPEC §4.2): the newest above the running one."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from contract.registry import Release, parse_version


@dataclass(frozen=True)
class Offer:
    """What the registry offers this install."""

    latest: Release | None  # the newest release above the running version on our channel
    installable: bool  # min_upgrade_from is met
    intermediate: Release | None  # when not installable: the newest release we can install first
    skipped: bool  # an admin chose to skip `latest`

    @property
    def update_available(self) -> bool:
        return self.latest is not None and not self.skipped


def _same_version(a: str, b: str) -> bool:
    va, vb = parse_version(a), parse_version(b)
    return va is not None and va == vb


def select_offer(
    releases: Iterable[Release], *, running: str, channel: str, skipped: Collection[str] = ()
) -> Offer:
    """The release to offer: newest on `channel` (stable releases reach every channel)."""
    current = parse_version(running)
    if current is None:
        return Offer(None, False, None, False)
    newer = sorted(
        (r for r in releases if r.channel in (channel, "stable") and r.parsed_version > current),
        key=lambda r: r.parsed_version,
    )
    if not newer:
        return Offer(None, False, None, False)
    latest = newer[-1]

    def reachable(release: Release) -> bool:
        minimum = parse_version(release.min_upgrade_from) if release.min_upgrade_from else None
        return minimum is None or current >= minimum

    installable = reachable(latest)
    intermediate = None
    if not installable:
        stepping = [r for r in newer[:-1] if reachable(r)]
        intermediate = stepping[-1] if stepping else None
    is_skipped = any(_same_version(latest.version, s) for s in skipped)
    return Offer(latest, installable, intermediate, is_skipped)
