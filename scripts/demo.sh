#!/usr/bin/env bash
# make demo: runs a few containers through flint on a private containerd
# (its root, state and sockets in a temp dir), shows output, exit codes, an
# exec and the event stream, then removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node dist/scripts/demo.js
