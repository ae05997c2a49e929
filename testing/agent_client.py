"""Signed requests to the agent API, exactly as SPEC §6 says the agent sends them."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.utils import timezone

from testing.signer import request_headers

EVENTS = "/api/updates/agent/events"
HEARTBEAT = "/api/updates/agent/heartbeat"


def sign(body: bytes, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
    """The signature headers of `body`, as the Django test client takes them."""
    headers = request_headers(secret or settings.OPENTRACE_AGENT_SECRET, body, timestamp)
    return {
        "HTTP_X_OPENTRACE_TIMESTAMP": headers["X-OpenTrace-Timestamp"],
        "HTTP_X_OPENTRACE_SIGNATURE": headers["X-OpenTrace-Signature"],
    }


def post(client, path: str, payload: Any, **sign_kwargs: Any):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(path, data=body, content_type="application/json", **sign(body, **sign_kwargs))


def event(seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    """An event stamped now, as the agent stamps them (the page judges "recent" by these times)."""
    return {"seq": seq, "kind": kind, "at": timezone.now().isoformat(), **fields}


def post_events(client, run_id: Any, *events: dict[str, Any]):
    return post(client, EVENTS, {"run_id": str(run_id), "events": list(events)})
