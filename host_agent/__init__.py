"""The OpenTrace host agent: performs updates on the machine that runs OpenTrace (SPEC §8).

A plain Python package (no Django) run as `python3 -m host_agent <command>` on the host's
Python 3.10+, with `requirements-agent.txt`. The formats it shares with the backend (the
trigger, the registry document, the signatures) are `contract/`'s. The folder reads as the
architecture: `trigger` reads and claims requests, `runner` drives the steps of `steps`,
`presets` decide what a step runs, `outbox`/`reporter` carry every event to the backend,
`journal` and `lock` make a run survive a crash.
"""

from __future__ import annotations

AGENT_VERSION = "1.0.0"
