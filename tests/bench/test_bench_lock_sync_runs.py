"""``bench/bench_lock_sync.py`` still runs: 20 locks, 4 revokes, one restart.

A benchmark nobody can run is a figure nobody can check; this one broke once
when the services it calls gained an argument. The figures are the bench's
business (docs/benchmarks.md); this only checks it completes and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from elock_testkit.liveserver import env
from elock_testkit.peers import require_tool
from elock_testkit.pgcluster import find_bin

pytestmark = [pytest.mark.peer, pytest.mark.slow]  # PostgreSQL and two key servers

ROOT = Path(__file__).resolve().parents[2]


def test_the_lock_sync_bench_completes_at_a_small_scale() -> None:
    require_tool(find_bin("initdb") or "initdb")  # the bench starts its own PostgreSQL
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_lock_sync.py"),
         "--locks", "20", "--clients", "2", "--samples", "4"],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["locks"] == 20 and figures["revoke_samples"] == 4
    # From the revoke's HTTP answer to the lock's list: it may be negative, when the
    # NOTIFY's push reached the lock before the answer reached the admin.
    assert isinstance(figures["revoke_to_lock_ms_p50"], float | int)
    assert figures["revoke_to_lock_ms_p50"] < 1000  # the bound, at 20 locks
