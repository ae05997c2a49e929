"""What the running agent is: its effective configuration, recorded in its state dir.

`python3 -m host_agent status` and `backup` (and `restore_all.py`) are run by hand, often
without the flags or environment the running agent got (`make run` starts it with
`--preset local` and its own backend URL). The agent records the configuration it actually
uses in `<state dir>/effective.json` when it starts, and leaves it there when it stops (it
still says how this install runs, e.g. for a restore with the app stopped); they read it
back, as untrusted input: every field is checked, and a record that fails a check is ignored
rather than believed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from host_agent.config import PRESETS, AgentConfig

FILE = "effective.json"
MAX_BYTES = 16 * 1024


def record(config: AgentConfig) -> Path:
    """Write the record (atomically, 0600, in the agent's own state dir)."""
    path = config.state_dir / FILE
    body = {
        "pid": os.getpid(),
        "preset": config.preset,
        "backend_url": config.backend_url,
        "project_dir": str(config.project_dir),
        "data_dir": str(config.data_dir),
        "remote": config.remote,
    }
    temp = path.with_name(f".{FILE}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(body, handle)
    os.replace(temp, path)
    return path


def read(state_dir: Path) -> dict[str, object] | None:
    """The running agent's record, or None when there is none or it does not hold up."""
    path = state_dir / FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, preset, url = data.get("pid"), data.get("preset"), data.get("backend_url")
    project, data_dir, remote = data.get("project_dir"), data.get("data_dir"), data.get("remote")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if preset not in PRESETS or not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        return None
    if not all(isinstance(p, str) and Path(p).is_absolute() for p in (project, data_dir)):
        return None
    if not isinstance(remote, str) or not remote or len(remote) > 200:
        return None
    return {"pid": pid, "preset": preset, "backend_url": url, "project_dir": project,
            "data_dir": data_dir, "remote": remote}  # fmt: skip


def preset_in_use(config: AgentConfig, flags: Mapping[str, object], environ: Mapping[str, str]) -> str:
    """The preset a command run by hand works with: the one asked for (flag or variable), else
    the agent's (running or last run here), else `local` where `make run` serves the data dir,
    else the default."""
    if flags.get("preset") or environ.get("OPENTRACE_AGENT_PRESET"):
        return config.preset
    recorded = read(config.state_dir)
    if recorded is not None:
        return str(recorded["preset"])
    if (config.data_dir / "run" / "supervisor.pid").exists():
        return "local"  # scripts/run_local.py's supervisor
    return config.preset
