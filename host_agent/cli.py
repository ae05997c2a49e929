"""`python3 -m host_agent run|once|status|backup|verify` (SPEC §8)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from host_agent import AGENT_VERSION, effective
from host_agent.config import load_config
from host_agent.errors import AgentError, ConfigError
from host_agent.lock import LockHeld

if TYPE_CHECKING:  # the import itself waits until the agent's packages are checked (main)
    from host_agent.agent import Agent

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 2
AGENT_REQUIREMENTS = ("packaging", "cryptography")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project-dir", help="the git checkout (OPENTRACE_PROJECT_DIR; default: cwd)")
    common.add_argument("--data-dir", help="data root (OPENTRACE_DATA_DIR; default: <project dir>/data)")
    common.add_argument(
        "--state-dir",
        help="the agent's own state (OPENTRACE_AGENT_STATE_DIR; default /var/lib/opentrace-agent "
        "for root, <data dir>/agent for the data dir's owner)",
    )
    common.add_argument("--registry-url", help="OPENTRACE_REGISTRY_URL (read when no keys are pinned)")
    common.add_argument("--backend-url", help="OPENTRACE_BACKEND_URL (default http://127.0.0.1:8000)")
    common.add_argument("--secret-file", help="file holding the agent secret (else OPENTRACE_AGENT_SECRET)")
    common.add_argument(
        "--preset", choices=["compose", "local"], help="OPENTRACE_AGENT_PRESET (default compose)"
    )
    common.add_argument("--remote", help="OPENTRACE_GIT_REMOTE (default origin)")
    common.add_argument(
        "--python", help="the project's Python (OPENTRACE_AGENT_PYTHON; default .venv/bin/python)"
    )
    common.add_argument("--restart-command", help="local preset without supervisor: how to restart the app")
    parser = argparse.ArgumentParser(prog="host_agent", description="OpenTrace host agent " + AGENT_VERSION)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[common], help="watch for triggers and heartbeat until SIGTERM")
    sub.add_parser(
        "once", parents=[common], help="process a pending trigger and exit (0 ok, 1 failed, 2 rejected)"
    )
    sub.add_parser("status", parents=[common], help="print the agent state as JSON")
    sub.add_parser("backup", parents=[common], help="make a backup set now (and verify it)")
    verify = sub.add_parser(
        "verify", parents=[common], help="verify backup sets: checksums and a test restore of the database"
    )
    verify.add_argument("set", nargs="?", help="one set's name (default: every set)")
    return parser


def describe(agent: Agent, asked_preset: bool) -> dict[str, object]:
    """`status`: the agent's state, with the agent's own configuration as it recorded it.

    Without that, the configuration shown would be this command's (its flags, environment
    and defaults), which need not be the agent's: `make run` starts it with `--preset local`
    and its own backend URL. A stopped agent's record still says how this install runs,
    unless this command was asked for a preset.
    """
    status = agent.status()
    recorded = effective.read(agent.config.state_dir)
    running = bool(status.get("agent_running"))
    if recorded is not None and (running or not asked_preset):
        for key in ("preset", "backend_url", "project_dir", "data_dir"):
            status[key] = recorded[key]
        status["configuration"] = (
            f"the running agent's (pid {recorded['pid']})"
            if running
            else f"the last agent's here (pid {recorded['pid']}, not running now)"
        )
    else:
        status["configuration"] = "this command's flags and environment (no agent recorded its own)"
    return status


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("OPENTRACE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    env = os.environ if environ is None else environ
    try:
        config = load_config(vars(args), env)
        if args.command in ("backup", "verify"):
            # By hand on a `make run` install: its agent's `local` preset, not the default `compose`.
            preset = effective.preset_in_use(config, vars(args), env)
            if preset != config.preset:
                config = load_config({**vars(args), "preset": preset}, env)
    except ConfigError as exc:
        print(f"host_agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_REJECTED

    try:
        from host_agent.agent import Agent
    except ModuleNotFoundError as exc:
        # The registry and trigger checks (contract/) need these on the agent's Python.
        if (exc.name or "").partition(".")[0] not in AGENT_REQUIREMENTS:
            raise
        print(
            f"host_agent: this Python ({sys.executable}) has no {exc.name!r} package; "
            "install requirements-agent.txt for it (install.sh does)",
            file=sys.stderr,
        )
        return EXIT_REJECTED

    stop = threading.Event()
    try:
        agent = Agent(config, stop=stop)
    except ConfigError as exc:  # a state dir or updates folder that is not safe to use
        print(f"host_agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    if args.command == "status":
        asked = bool(args.preset or env.get("OPENTRACE_AGENT_PRESET"))
        print(json.dumps(describe(agent, asked), indent=2, sort_keys=True))
        return EXIT_OK

    def on_term(signum: int, frame: object) -> None:
        # Honoured between steps: the step in progress always completes.
        logging.getLogger("host_agent").info("signal %d: stopping after the current step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        if args.command == "run":
            try:
                # Kept after the agent stops: it still says how this install runs (`status`,
                # `backup` and `restore_all.py` by hand, with the app stopped for a restore).
                effective.record(config)
            except OSError as exc:  # `status` then says what this command was given
                logging.getLogger("host_agent").warning("could not record the configuration: %s", exc)
            return agent.run_forever()
        if args.command == "once":
            return agent.run_once()
        if args.command == "verify":
            results = agent.verify_now(args.set)
            print(json.dumps(results, indent=2, sort_keys=True))
            return EXIT_OK if all(r["state"] == "verified" for r in results.values()) else EXIT_FAILED
        print(agent.backup_now())
        return EXIT_OK
    except LockHeld as exc:
        print(f"host_agent: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except AgentError as exc:
        print(f"host_agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
