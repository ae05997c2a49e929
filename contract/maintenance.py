"""The local maintenance flag (SPEC §7, a release that declares downtime; `local` preset).

The host agent writes `<DATA_DIR>/run/maintenance` before it migrates such a release; the web
app (`opentrace.maintenance`) answers the dashboard and `/healthz` with 503 and `Retry-After`
while the file names the release the process runs. The new release's processes run another
version, so they serve as soon as they are up; the agent removes the file once the new
release is healthy, or when the run rolls back. The file is in the data dir, which the web
app can write: it decides only what the app itself answers.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

RUN_DIR = PurePosixPath("run")
NAME = "maintenance"
LIMIT = 4096  # bytes; anything larger is not a flag this agent wrote
RETRY_AFTER_SECONDS = 30  # as the compose proxy's maintenance page (deploy/proxy/haproxy.cfg)


def encode(version: str) -> bytes:
    """The flag's content: the release that stopped serving."""
    return json.dumps({"stopped": version}).encode() + b"\n"


def stopped_version(data: bytes) -> str | None:
    """The release a flag stops, or None when it is not a flag (garbage serves as usual)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    stopped = value.get("stopped") if isinstance(value, dict) else None
    return stopped if isinstance(stopped, str) and 0 < len(stopped) <= 64 else None
