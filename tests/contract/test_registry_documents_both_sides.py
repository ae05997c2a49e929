"""One registry document, two readers: the backend's check and the agent's trigger, the same answer.

Each case serves a document to `run_check()` (the backend offers its release, or records the
refusal) and hands the same bytes to the real `python -m host_agent once` as a trigger's
`manifest` (the agent installs the release, or rejects the trigger with exit 2). SPEC §4 and §5
say both sides read documents by the same rules; before `contract/` they disagreed on the first
four cases below (the agent had its own parser).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from testing.agent import run_agent, trigger_fields, write_trigger
from testing.registry_server import SigningKey, envelope, new_key, respond
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ACCEPTED, REFUSED = "accepted", "refused"
KEYS = {keyid: new_key(keyid) for keyid in ("k1", "k2", "k9")}


def document(*releases: dict[str, Any], meta_version: int = 1, **top: Any) -> dict[str, Any]:
    """A schema-1 document for opentrace that expires a month from now."""
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema": 1,
        "project": "opentrace",
        "meta_version": meta_version,
        "expires": expires,
        "releases": list(releases),
        **top,
    }


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def signed(inner: bytes, *keyids: str) -> bytes:
    return envelope(inner, *(KEYS[k] for k in keyids))


def pinned_value(keyids: tuple[str, ...]) -> str:
    return ",".join(f"{k}:{base64.b64encode(KEYS[k].public_raw).decode()}" for k in keyids)


@dataclass(frozen=True)
class Case:
    body: Callable[[], bytes]
    target: str = "1.2.0"
    pinned: tuple[str, ...] = ()


def _mixed_signatures() -> bytes:
    inner = raw(document({"version": "1.2.0"}))
    impostor: SigningKey = KEYS["k9"]
    return envelope(
        inner,
        signatures=[
            {"keyid": "k1", "sig": KEYS["k1"].sign(inner)},
            {"keyid": "k2", "sig": impostor.sign(inner)},  # k2's slot, signed by another key
        ],
    )


def _duplicate_keys() -> bytes:
    # The last `releases` offers the target: a parser that keeps the last value would install it.
    head = raw(document())[:-1]
    return head + b', "releases": [{"version": "1.2.0"}]}'


def _oversize() -> bytes:
    body = raw(document({"version": "1.2.0"}))
    return body[:-1] + b" " * (256 * 1024) + b"}"


def _expired() -> bytes:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return raw(document({"version": "1.2.0"}, expires=yesterday))


CASES = {
    # The four disagreements of issue 15, now one answer.
    "pep440-post-release": (Case(lambda: raw(document({"version": "1.2.0.post1"})), "1.2.0.post1"), ACCEPTED),
    "one-good-one-bad-signature": (Case(_mixed_signatures, pinned=("k1", "k2")), REFUSED),
    "duplicate-json-keys": (Case(_duplicate_keys), REFUSED),
    "full-shape-without-schema": (
        Case(lambda: raw({k: v for k, v in document({"version": "1.2.0"}).items() if k != "schema"})),
        REFUSED,
    ),
    # Hostile documents both sides already refused, each its own way.
    "deep-nesting": (Case(lambda: b"[" * 50000 + b"]" * 50000), REFUSED),
    "lone-surrogate": (Case(lambda: raw(document({"version": "1.2.0", "notes": "\ud800"}))), REFUSED),
    "over-256-kib": (Case(_oversize), REFUSED),
    "another-project": (Case(lambda: raw(document({"version": "1.2.0"}, project="other"))), REFUSED),
    "expired": (Case(_expired), REFUSED),
    "unknown-keyid": (
        Case(lambda: signed(raw(document({"version": "1.2.0"})), "k1", "k9"), pinned=("k1",)),
        REFUSED,
    ),
    "unsigned-while-keys-are-pinned": (
        Case(lambda: raw(document({"version": "1.2.0"})), pinned=("k1",)),
        REFUSED,
    ),
    "not-json": (Case(lambda: b"<html>maintenance</html>"), REFUSED),
    # And what both accept.
    "signed-with-the-pinned-key": (
        Case(lambda: signed(raw(document({"version": "1.2.0"})), "k1"), pinned=("k1",)),
        ACCEPTED,
    ),
    "legacy-flat-shape": (Case(lambda: raw({"version": "1.2.0", "changelog": "Fixes."})), ACCEPTED),
}


def backend_answer(server, settings, case: Case, body: bytes) -> tuple[str, str]:
    settings.OPENTRACE_REGISTRY_KEYS = {k: KEYS[k].public_raw for k in case.pinned}
    server.serve("/version.json", respond(body))
    check = run_check(RegistryCheck.Trigger.COMMAND)
    if check.outcome != RegistryCheck.Outcome.OK:
        return REFUSED, check.error
    offer = RegistryState.load().offer()
    if offer.latest is None or offer.latest.version != case.target:
        return REFUSED, f"the check offers {offer.latest.version if offer.latest else 'nothing'}"
    return ACCEPTED, f"offers {offer.latest.version}"


def agent_answer(project, backend, case: Case, body: bytes) -> tuple[str, str]:
    if case.target not in project.commits:
        project.add_release(case.target)
    run_id = write_trigger(project, trigger_fields(case.target, manifest=body))
    env = {"OPENTRACE_REGISTRY_KEYS": pinned_value(case.pinned)} if case.pinned else {}
    done = run_agent(project, backend, **env)
    reasons = sorted((project.state_dir / "rejected").glob("*.reason"))
    if done.returncode == 0 and backend.final_state(run_id) == "succeeded":
        return ACCEPTED, f"installed {project.served()}"
    if done.returncode == 2 and reasons and backend.final_state(run_id) == "failed":
        return REFUSED, reasons[-1].read_text().strip()
    return f"exit {done.returncode}", done.stderr[-500:]


@pytest.mark.parametrize(("case", "expected"), CASES.values(), ids=CASES.keys())
def test_the_backend_and_the_agent_answer_the_same(
    registry_server, settings, project, backend, case, expected
):
    body = case.body()

    backend_said, backend_why = backend_answer(registry_server, settings, case, body)
    agent_said, agent_why = agent_answer(project, backend, case, body)

    assert (backend_said, agent_said) == (expected, expected), (backend_why, agent_why)


def test_the_backend_refuses_a_lower_meta_version_than_it_accepted(registry_server, settings):
    accepted = Case(lambda: raw(document({"version": "1.2.0"}, meta_version=42)))
    assert backend_answer(registry_server, settings, accepted, accepted.body())[0] == ACCEPTED

    older = Case(lambda: raw(document({"version": "1.3.0"}, meta_version=41)), "1.3.0")
    said, why = backend_answer(registry_server, settings, older, older.body())

    assert said == REFUSED
    assert "rollback" in why


def test_the_agent_refuses_a_lower_meta_version_than_it_accepted(project, backend):
    accepted = Case(lambda: raw(document({"version": "1.2.0"}, meta_version=42)))
    assert agent_answer(project, backend, accepted, accepted.body())[0] == ACCEPTED

    older = Case(lambda: raw(document({"version": "1.3.0"}, meta_version=41)), "1.3.0")
    said, why = agent_answer(project, backend, older, older.body())

    assert said == REFUSED, why
