#!/usr/bin/env bash
# OpenTrace updater: a thin wrapper around the host agent (SPEC §8).
#
#   ./updater.sh                 watch for update requests and heartbeat until SIGTERM (`run`)
#   ./updater.sh once|status|backup [flags]
#
# Flags and variables are the agent's (python3 -m host_agent --help). The project dir
# defaults to the directory holding this script; the preset to `compose`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export OPENTRACE_PROJECT_DIR="${OPENTRACE_PROJECT_DIR:-$here}"

# The agent's Python: OPENTRACE_AGENT_HOST_PYTHON, else the virtualenv install.sh made for
# it (.agent-venv, with requirements-agent.txt), else the first python3 that is 3.10 or newer
# and has the packages the agent cannot start without (requirements-agent.txt: packaging and
# cryptography check the registry document and the trigger; the Docker SDK is imported only
# by the compose preset, which reports its absence itself).
needs='import sys; sys.exit(1) if sys.version_info < (3, 10) else None; import packaging.version, cryptography.hazmat.primitives.asymmetric.ed25519'
python="${OPENTRACE_AGENT_HOST_PYTHON:-}"
if [[ -z "$python" && -x "$here/.agent-venv/bin/python" ]]; then
  python="$here/.agent-venv/bin/python"
fi
if [[ -n "$python" ]]; then
  if ! "$python" -c "$needs" 2>/dev/null; then
    echo "updater.sh: $python is not Python 3.10+ with packaging and cryptography;" \
      "install requirements-agent.txt for it (install.sh does)" >&2
    exit 2
  fi
else
  for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$needs" 2>/dev/null; then
      python="$(command -v "$candidate")"
      break
    fi
  done
fi
if [[ -z "$python" ]]; then
  echo "updater.sh: Python 3.10 or newer with packaging and cryptography is required on the host;" \
    "run install.sh (it makes .agent-venv) or pip install -r requirements-agent.txt" >&2
  exit 2
fi

command="run"
case "${1:-}" in
  run | once | status | backup)
    command="$1"
    shift
    ;;
esac

cd "$here"
exec "$python" -m host_agent "$command" "$@"
