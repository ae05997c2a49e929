"""Staged rollout buckets: derived from the install id alone, spread evenly."""

from __future__ import annotations

import uuid

import pytest

from contract.offer import select_offer
from contract.registry import Release
from contract.rollout import BUCKETS, bucket, in_rollout

SIMULATED_INSTALLS = 10_000


def test_a_bucket_depends_on_the_install_id_only():
    install_id = str(uuid.uuid4())
    assert bucket(install_id) == bucket(install_id)
    assert 0 <= bucket(install_id) < BUCKETS


@pytest.mark.parametrize("percentage", [1, 5, 10, 25, 50, 75, 90, 99])
def test_a_percentage_reaches_that_share_of_installs_within_three_points(percentage):
    ids = [str(uuid.UUID(int=i * 2654435761 + 12345, version=4)) for i in range(SIMULATED_INSTALLS)]
    reached = sum(in_rollout(percentage, bucket(i)) for i in ids)
    assert abs(reached / SIMULATED_INSTALLS * 100 - percentage) <= 3


def test_random_install_ids_spread_the_same_way():
    reached = sum(in_rollout(30, bucket(str(uuid.uuid4()))) for _ in range(SIMULATED_INSTALLS))
    assert abs(reached / SIMULATED_INSTALLS * 100 - 30) <= 3


def test_raising_the_percentage_only_adds_installs():
    ids = [str(uuid.uuid4()) for _ in range(2_000)]
    at_20 = {i for i in ids if in_rollout(20, bucket(i))}
    at_60 = {i for i in ids if in_rollout(60, bucket(i))}
    assert at_20 <= at_60


def test_zero_reaches_nobody_and_a_hundred_everybody():
    assert not any(in_rollout(0, b) for b in range(BUCKETS))
    assert all(in_rollout(100, b) for b in range(BUCKETS))


def test_a_release_not_rolled_out_here_is_held_back_and_an_older_one_offered():
    releases = [Release("1.2.0", git_tag="v1.2.0"), Release("1.3.0", git_tag="v1.3.0", rollout=10)]
    outside = select_offer(releases, running="1.1.5", channel="stable", bucket=50)
    inside = select_offer(releases, running="1.1.5", channel="stable", bucket=5)
    assert (outside.latest.version, outside.held_back.version) == ("1.2.0", "1.3.0")
    assert (inside.latest.version, inside.held_back) == ("1.3.0", None)


def test_a_withdrawn_release_is_never_offered():
    releases = [Release("1.2.0", git_tag="v1.2.0"), Release("1.2.1", git_tag="v1.2.1", withdrawn=True)]
    offer = select_offer(releases, running="1.1.5", channel="stable", bucket=0)
    assert offer.latest.version == "1.2.0"
    assert select_offer(releases[1:], running="1.1.5", channel="stable").latest is None


def test_an_upgrade_path_takes_the_newest_release_in_reach_at_each_hop():
    releases = [
        Release("1.1.7", git_tag="v1.1.7"),
        Release("1.1.8", git_tag="v1.1.8"),
        Release("1.2.0", git_tag="v1.2.0", min_upgrade_from="1.1.8"),
        Release("2.0.0", git_tag="v2.0.0", min_upgrade_from="1.2.0"),
    ]
    offer = select_offer(releases, running="1.1.5", channel="stable")
    assert [r.version for r in offer.path] == ["1.1.8", "1.2.0", "2.0.0"]
    assert [r.version for r in select_offer(releases[2:], running="1.1.5", channel="stable").path] == []
