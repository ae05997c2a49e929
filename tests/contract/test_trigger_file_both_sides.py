"""The trigger file (SPEC §5) between the backend that writes it and the agent that runs it.

The backend's `updates.trigger` writes it and reads it back (to withdraw a run it can prove
the file holds); the agent's `python -m host_agent once` runs it. What the backend writes, the
agent runs; whatever else sits at that path, the backend's reader does not take it for a
trigger and the agent rejects it (exit 2, moved to rejected/), never following, hanging on or
half-reading it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from testing.agent import SECRET, manifest_body, run_agent, sign, trigger_fields
from testing.factories import make_run
from updates import trigger

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared(settings, project) -> Path:
    """The backend and the agent share `<DATA_DIR>/updates/` and the secret, as in production."""
    settings.OPENTRACE_UPDATES_DIR = project.updates
    settings.OPENTRACE_AGENT_SECRET = SECRET
    project.updates.mkdir(parents=True, exist_ok=True)
    return project.updates / "trigger"


def test_the_trigger_the_backend_writes_is_one_the_agent_runs(shared, project, backend, django_user_model):
    # A name that is not ASCII: both sides sign the same canonical bytes of it.
    admin = django_user_model.objects.create_superuser("zoë", "z@example.com", "pw-zoë-12345")
    run = make_run(user=admin, manifest=manifest_body("1.2.0"))
    trigger.write(trigger.build(run))

    assert trigger.read()["run_id"] == str(run.pk)
    done = run_agent(project, backend)

    assert done.returncode == 0, done.stderr
    assert backend.final_state(str(run.pk)) == "succeeded"
    assert project.served() == "1.2.0"


def _signed(**changes: object) -> bytes:
    fields = trigger_fields("1.2.0")
    fields.update(changes)
    fields["signature"] = sign({k: v for k, v in fields.items() if k != "signature"})
    return json.dumps(fields).encode()


def _symlink(path: Path) -> None:
    target = path.parent.parent / "elsewhere.json"
    target.write_bytes(_signed())
    path.symlink_to(target)


def _hardlink(path: Path) -> None:
    other = path.parent.parent / "other.json"
    other.write_bytes(_signed())
    os.link(other, path)


def _duplicate_keys(path: Path) -> None:
    # Signed over the first git_tag; a parser that keeps the last value would check out another.
    data = _signed()
    path.write_bytes(data[:-1] + b', "git_tag": "v9.9.9"}')


HOSTILE: dict[str, Callable[[Path], None]] = {
    "symbolic-link": _symlink,
    "hard-link": _hardlink,
    "fifo": lambda path: os.mkfifo(path),
    "directory": lambda path: path.mkdir(),
    "over-512-kib": lambda path: path.write_bytes(_signed(requested_by="x" * (600 * 1024))),
    "deep-nesting": lambda path: path.write_bytes(b"[" * 50000 + b"]" * 50000),
    # json.dumps escapes it: the file is ASCII, the parsed field a lone surrogate (no HMAC can cover it).
    "lone-surrogate": lambda path: path.write_bytes(
        json.dumps({**trigger_fields("1.2.0"), "requested_by": "\ud800"}).encode()
    ),
    "duplicate-keys": _duplicate_keys,
    "not-utf8": lambda path: path.write_bytes(b'{"run_id": "\xff"}'),
    "not-json": lambda path: path.write_bytes(b"run 1.2.0 please"),
}


@pytest.mark.parametrize("plant", HOSTILE.values(), ids=HOSTILE.keys())
def test_what_is_not_a_trigger_is_refused_on_both_sides(shared, project, backend, plant):
    plant(shared)

    backend_reads = trigger.read()
    done = run_agent(project, backend)

    assert backend_reads is None
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.lexists(shared)
    assert sorted((project.state_dir / "rejected").glob("*.reason"))
    assert project.manage_log() == []
