"""The fuzz targets in the suite: their corpus and past crashes replayed, then a short run each.

Each target gets ``ELOCK_FUZZ_SECONDS`` (default 3) of coverage-guided fuzzing
under atheris in a subprocess (libFuzzer ends the process it runs in); twelve
targets make about a minute. New inputs go to a scratch corpus, so the repo's
stays as committed. docs/testing.md says how to run one for an hour.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECONDS = int(os.environ.get("ELOCK_FUZZ_SECONDS", "3"))


def _inputs(name: str) -> list[Path]:
    dirs = [HERE / "corpus" / name, HERE / "regressions" / name]
    return sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_corpus_and_past_crashes_pass(name: str) -> None:
    inputs = _inputs(name)
    assert inputs, f"no seed corpus for {name}: run python -m tests.fuzz.seeds"
    for path in inputs:
        TARGETS[name](path.read_bytes())


@pytest.mark.slow
@pytest.mark.peer  # libFuzzer runs each target in a process of its own
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_fuzzing_run_finds_nothing(name: str, tmp_path: Path) -> None:
    import subprocess

    scratch = tmp_path / "corpus"
    scratch.mkdir()
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.run",
        name,
        f"-max_total_time={SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        "-rss_limit_mb=2048",
        "-timeout=10",
        str(scratch),
        str(HERE / "corpus" / name),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 60)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash", "timeout")))
    assert done.returncode == 0 and not crashes, (
        f"{name} found {crashes}; copy it into tests/fuzz/regressions/{name}/:\n"
        + done.stderr[-4000:]
    )
    assert "Done" in done.stderr


def test_every_target_says_what_it_covers() -> None:
    from tests.fuzz.run import COVERED

    assert set(COVERED) == set(TARGETS)
