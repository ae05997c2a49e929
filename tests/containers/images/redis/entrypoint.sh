#!/bin/sh
# As the official image's entrypoint: no config file given, so turn protected mode off.
set -eu
if [ "${1:-}" = redis-server ]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
