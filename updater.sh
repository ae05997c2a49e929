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
# it (.agent-venv, with the Docker SDK), else the first python3 that is 3.10 or newer.
python="${OPENTRACE_AGENT_HOST_PYTHON:-}"
if [[ -z "$python" && -x "$here/.agent-venv/bin/python" ]]; then
  python="$here/.agent-venv/bin/python"
fi
if [[ -z "$python" ]]; then
  for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      python="$(command -v "$candidate")"
      break
    fi
  done
fi
if [[ -z "$python" ]]; then
  echo "updater.sh: Python 3.10 or newer is required on the host (python3)" >&2
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
