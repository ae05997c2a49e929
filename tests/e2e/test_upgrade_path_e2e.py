"""An upgrade path for real (issue 20): 1.2.0 needs 1.1.8 first, so one click installs 1.1.8
and then 1.2.0 — two runs through the real agent in `local` mode, each with its own backup,
checks and history — and a failing first hop stops the path before the second.

The site runs no Celery worker (the harness's choice): the policy's pass that beat runs
every minute is run here with `manage.py apply_update_policy`, by the release serving then.
Slow (two updates); run with `pytest tests/e2e`.
"""

from __future__ import annotations

import json
import re

import pytest

from contract import events
from testing.e2e import add_release
from testing.helpers import wait_for

pytestmark = pytest.mark.slow
STEPS = list(events.STEPS)  # SPEC §7: migrate before deploy


def offer_path(site, *, breakage: str | None = None) -> None:
    """Publish 1.1.8 (optionally broken) and 1.2.0 (from 1.1.8 or later), and check."""
    commits = {
        "1.1.8": add_release(site.upstream, "1.1.8", breakage),
        "1.2.0": add_release(site.upstream, "1.2.0"),
    }
    site.registry.meta_version += 1
    site.registry.body = json.dumps(
        {
            "schema": 1,
            "project": "opentrace",
            "meta_version": site.registry.meta_version,
            "releases": [
                {"version": "1.1.8", "git_commit": commits["1.1.8"], "notes": "e2e"},
                {
                    "version": "1.2.0",
                    "git_commit": commits["1.2.0"],
                    "notes": "e2e",
                    "min_upgrade_from": "1.1.8",
                },
            ],
        }
    ).encode()
    result = json.loads(site.manage("check_updates", "--json"))
    assert result["latest"] == "1.2.0", result


def click_install(site, first_hop: str) -> str:
    """Install update → confirm, as an admin would; returns the id of the first hop's run."""
    page = site.session.get(f"{site.url}/admin/updates/system/install/", timeout=10).text
    fields = dict(
        re.findall(
            r'name="(version|document_sha256|idempotency_key|csrfmiddlewaretoken)" value="([^"]*)"', page
        )
    )
    assert fields.get("version") == "1.2.0", page[:2000]
    response = site.session.post(f"{site.url}/admin/updates/system/install/start/", data=fields, timeout=10)
    assert "each release is installed after the previous one succeeded" in response.text, response.text[
        -3000:
    ]

    def requested() -> str | None:
        run = site.progress()["run"]
        return run["id"] if run and run["to_version"] == first_hop else None

    return wait_for(requested, 10, "the first hop's run")


def policy_pass(site) -> dict:
    """One pass, as beat runs it; on SQLite a pass that met a write lock fails, and beat's
    next minute would run it again: so does this, a few times."""

    def once() -> dict | None:
        try:
            return json.loads(site.manage("apply_update_policy", "--json"))["scheduled"]
        except AssertionError as exc:
            if "database is locked" not in str(exc):
                raise
            return None

    return wait_for(once, 60, "a policy pass that got the SQLite write lock", interval=2)


def backups(site) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in (site.data_dir / "backups").iterdir())


def test_one_click_installs_both_hops_each_as_its_own_run(make_site):
    site = make_site()
    site.start()
    offer_path(site)
    confirm = site.session.get(f"{site.url}/admin/updates/system/install/", timeout=10).text
    assert '<strong id="confirm-path-hops">1.1.8, then 1.2.0</strong>' in confirm

    first_id = click_install(site, "1.1.8")
    first = site.wait_finished(first_id)
    assert (first["to_version"], first["status"]) == ("1.1.8", "succeeded"), site.logs()
    assert site.health() == (200, "1.1.8")

    # The pass beat would run, by 1.1.8 now serving: the next hop is requested.
    scheduled = policy_pass(site)
    assert scheduled["installed_hops"] == ["1.1.8"], scheduled
    second_id = scheduled["run_ids"][-1]
    second = site.wait_finished(second_id)

    assert (second["to_version"], second["status"]) == ("1.2.0", "succeeded"), site.logs()
    assert site.health() == (200, "1.2.0")
    assert [s["name"] for s in first["steps"]] == STEPS
    assert [s["name"] for s in second["steps"]] == STEPS
    assert backups(site) == ["1.1.5", "1.1.8"]  # each hop made its own backup
    done = policy_pass(site)
    assert (done["status"], done["installed_hops"], done["run_ids"]) == (
        "done",
        ["1.1.8", "1.2.0"],
        [first_id, second_id],
    )


def test_a_failing_first_hop_stops_the_path(make_site):
    site = make_site()
    site.start()
    offer_path(site, breakage="build")

    first_id = click_install(site, "1.1.8")
    first = site.wait_finished(first_id)
    assert (first["to_version"], first["status"], first["failed_step"]) == ("1.1.8", "failed", "build")

    scheduled = wait_for(lambda: (s := policy_pass(site)) and s["status"] == "stopped" and s, 30, "the stop")

    assert scheduled["message"] == "Stopped: the update to 1.1.8 failed at build. 1.2.0 was not installed."
    assert scheduled["run_ids"] == [first_id]
    assert site.health() == (200, "1.1.5")
    assert policy_pass(site)["run_ids"] == [first_id]  # and nothing more is ever requested
