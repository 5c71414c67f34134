#!/usr/bin/env bash
# The test command: static checks, then the whole suite against real peers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-}"
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict (shared package and applet)"
.venv/bin/mypy --strict elock_common firmware
echo "== pytest"
exec .venv/bin/python -X dev -m pytest "$@"
