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
if [ "$#" -eq 0 ]; then
  # The whole suite: in parallel shards, each in its own network and mount namespace
  # (root; elock_testkit/suite.py says why). ELOCK_TEST_SHARDS=1 runs it in one process.
  exec .venv/bin/python -m elock_testkit.suite
fi
exec .venv/bin/python -X dev -m pytest "$@"
