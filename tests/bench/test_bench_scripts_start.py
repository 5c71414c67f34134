"""Every benchmark script starts: its imports resolve and it prints its usage.

The benches are run by hand, so a refactor that breaks one is found by the next
person who wants a figure (the lock-sync bench was found broken that way).
``--help`` runs every import the script makes and its argument parser.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from elock_testkit.liveserver import env

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p.name for p in (ROOT / "bench").glob("*.py") if 'if __name__ == "__main__"' in p.read_text()
)


def test_every_script_in_bench_is_found() -> None:
    assert len(SCRIPTS) >= 13 and "bench_open.py" in SCRIPTS, SCRIPTS


@pytest.mark.peer  # each bench runs as a process, as a person runs it
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_bench_script_starts(script: str) -> None:
    command = [sys.executable, str(ROOT / "bench" / script), "--help"]
    done = subprocess.run(command, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
