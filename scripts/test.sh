#!/usr/bin/env bash
# The test command: static checks, then the whole suite against real peers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-}"
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict (every part)"
.venv/bin/mypy --strict elock_common firmware lock_server key_client racs elock_push elock_demo key_provisioner
echo "== pytest"
exec .venv/bin/python -X dev -m pytest "$@"
