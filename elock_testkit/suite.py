"""The whole suite in parallel shards, each in its own network and mount namespace.

Most of the suite's time is spent waiting on real peers: a lock answering after its
timeout, pcscd's 400 ms presence poll, a model's membership query waiting out a silent
state. Run one after another, those waits add up; run side by side they overlap. What
stops the suite from simply running in parallel is what the peers hold machine-wide:
pcscd's socket in /run/pcscd, the vpcd reader's TCP port, the names in /run/netns, fixed
ports on loopback. Each shard therefore runs under ``unshare --net --mount`` with its own
loopback and its own /run/pcscd and /run/netns, so two shards cannot see each other's
peers at all. That needs root, which CI has; without root, or with pytest arguments, the
suite runs in one process as before.

Test files (never single tests: a module's fixtures stay in one process) go to the least
loaded shard, longest first, by the seconds recorded in ``tests/durations.json``.
``python -m elock_testkit.suite --record`` rewrites that file from the run it makes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DURATIONS = ROOT / "tests" / "durations.json"
DEFAULT_SHARDS = 3
UNKNOWN_FILE_SECONDS = 5.0  # a test file not in durations.json yet
SHARD_DEADLINE = 40 * 60.0  # seconds; a shard still running then is killed and fails
PROGRESS_SECONDS = 60.0
# A line of pytest -q's marks, one per test, with its percentage once the line is full.
_MARKS = re.compile(r"^([.FEsxX]+)(?:\s+\[\s*\d+%\])?$", re.MULTILINE)

# Inside the new namespaces: mounts stay private, pcscd and ip-netns get empty run
# directories, and loopback comes up (a new network namespace starts with it down).
_ISOLATE = (
    "mount --make-rprivate / && mkdir -p /run/pcscd /run/netns"
    " && mount -t tmpfs tmpfs /run/pcscd && mount -t tmpfs tmpfs /run/netns"
    ' && ip link set lo up && exec "$@"'
)


@dataclass
class Shard:
    index: int
    files: list[str] = field(default_factory=list)
    expected_seconds: float = 0.0


@dataclass(frozen=True)
class ShardResult:
    tests: int
    failures: int
    errors: int
    skipped: int
    seconds: float
    exit_code: int = 0  # pytest's: non-zero fails the shard even when every test passed

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.errors == 0 and self.exit_code == 0


def test_files(root: Path = ROOT) -> list[str]:
    """Every file pytest collects by its default pattern, relative to the repository."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py"))


def partition(files: list[str], seconds: dict[str, float], count: int) -> list[Shard]:
    """Longest file first onto the shard with the least expected time (LPT scheduling)."""
    shards = [Shard(index) for index in range(max(1, count))]
    by_length = sorted(files, key=lambda f: (-seconds.get(f, UNKNOWN_FILE_SECONDS), f))
    for name in by_length:
        lightest = min(shards, key=lambda s: (s.expected_seconds, s.index))
        lightest.files.append(name)
        lightest.expected_seconds += seconds.get(name, UNKNOWN_FILE_SECONDS)
    return [s for s in shards if s.files]


def file_seconds(junit_xml: Path, root: Path = ROOT) -> dict[str, float]:
    """Seconds per test file (setup, call and teardown) from a pytest JUnit report."""
    totals: dict[str, float] = {}
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        name = _file_of(case.get("classname", ""), root)
        if name is not None:
            totals[name] = totals.get(name, 0.0) + float(case.get("time", "0") or 0)
    return totals


def _file_of(classname: str, root: Path) -> str | None:
    """``tests.a.test_b.TestC`` -> ``tests/a/test_b.py``: the longest prefix that is a file."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = Path(*parts[:end]).with_suffix(".py")
        if (root / candidate).is_file():
            return str(candidate)
    return None


def summarize(junit_xml: Path) -> ShardResult:
    root = ElementTree.parse(junit_xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))

    def total(attribute: str) -> int:
        return sum(int(s.get(attribute, "0")) for s in suites)

    return ShardResult(
        tests=total("tests"),
        failures=total("failures"),
        errors=total("errors"),
        skipped=total("skipped"),
        seconds=sum(float(s.get("time", "0")) for s in suites),
    )


def can_isolate() -> bool:
    """Whether a shard's namespaces can be made here: tried once, not assumed from root."""
    tools = ("unshare", "ip", "mount")
    if os.geteuid() != 0 or not all(shutil.which(tool) is not None for tool in tools):
        return False
    probe = ["unshare", "--net", "--mount", "--fork", "bash", "-c", _ISOLATE, "probe", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _junit_report(workdir: Path, index: int) -> Path:
    return workdir / f"shard-{index}.xml"


def _shard_command(shard: Shard, workdir: Path) -> list[str]:
    pytest_args = [
        sys.executable,
        "-u",  # the log is read for progress while the shard runs
        "-X",
        "dev",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={workdir / f'tmp-{shard.index}'}",
        f"--junitxml={_junit_report(workdir, shard.index)}",
        *shard.files,
    ]
    return ["unshare", "--net", "--mount", "--fork", "bash", "-c", _ISOLATE, "shard", *pytest_args]


@dataclass
class _Running:
    shard: Shard
    proc: subprocess.Popen[bytes]
    log: Path
    xml: Path


def run_shards(shards: list[Shard], workdir: Path) -> list[ShardResult | None]:
    """Start every shard, report each as it ends; None for a shard that left no report."""
    began = time.monotonic()
    running: list[_Running] = []
    for shard in shards:
        log = workdir / f"shard-{shard.index}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                _shard_command(shard, workdir),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a shard past its deadline is killed as a group
            )
        running.append(_Running(shard, proc, log, _junit_report(workdir, shard.index)))
        print(
            f"   shard {shard.index}: {len(shard.files)} files, "
            f"about {shard.expected_seconds:.0f} s of tests",
            flush=True,
        )
    results: dict[int, ShardResult | None] = {}
    next_progress = began + PROGRESS_SECONDS
    while len(results) < len(running):
        for run in running:
            if run.shard.index in results or not _ended(run, began):
                continue
            result = None
            if run.xml.exists():
                result = replace(summarize(run.xml), exit_code=run.proc.returncode)
            results[run.shard.index] = result
            _report(run, result, time.monotonic() - began)
        if time.monotonic() >= next_progress and len(results) < len(running):
            next_progress += PROGRESS_SECONDS
            _progress([r for r in running if r.shard.index not in results], began)
        time.sleep(0.5)
    return [results[run.shard.index] for run in running]


def _progress(running: list[_Running], began: float) -> None:
    """A line a minute: how many tests each running shard has done (pytest's -q marks)."""
    parts = []
    for run in running:
        marks = _MARKS.findall(run.log.read_text(errors="replace"))
        parts.append(f"shard {run.shard.index} {sum(len(m) for m in marks)} tests done")
    print(f"   at {time.monotonic() - began:.0f} s: {', '.join(parts)}", flush=True)


def _ended(run: _Running, began: float) -> bool:
    if run.proc.poll() is not None:
        return True
    if time.monotonic() - began < SHARD_DEADLINE:
        return False
    print(f"   shard {run.shard.index}: still running after {SHARD_DEADLINE:.0f} s; killed")
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.proc.wait(30)
    return True


def _report(run: _Running, result: ShardResult | None, elapsed: float) -> None:
    if result is None or not result.ok:
        print(f"   shard {run.shard.index}: FAILED after {elapsed:.0f} s; its output:", flush=True)
        print(_failure_part(run.log.read_text(errors="replace")), flush=True)
        return
    print(
        f"   shard {run.shard.index}: {result.tests} tests passed "
        f"({result.skipped} skipped), ended at {elapsed:.0f} s",
        flush=True,
    )


def _failure_part(log: str) -> str:
    """From pytest's FAILURES or ERRORS section on, or the log's last 200 lines."""
    for header in ("= FAILURES =", "= ERRORS ="):
        at = log.find(header)
        if at >= 0:
            return log[log.rfind("\n", 0, at) + 1 :]
    return "\n".join(log.splitlines()[-200:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from_env = os.environ.get("ELOCK_TEST_SHARDS", str(DEFAULT_SHARDS))
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument(
        "--record", action="store_true", help="rewrite tests/durations.json from this run"
    )
    options = parser.parse_args(argv)
    if options.shards is None:
        if not from_env.isdigit():
            parser.error(f"ELOCK_TEST_SHARDS must be a whole number, not {from_env[:20]!r}")
        options.shards = int(from_env)
    if options.shards < 1:
        parser.error("--shards and ELOCK_TEST_SHARDS must be at least 1")
    if not can_isolate():
        print("   (no namespaces here: not root, or unshare refused; one process)", flush=True)
        return subprocess.call([sys.executable, "-X", "dev", "-m", "pytest"], cwd=ROOT)
    recorded = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    shards = partition(test_files(), recorded, options.shards)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="elock-suite-") as tmp:
        workdir = Path(tmp)
        results = run_shards(shards, workdir)
        if options.record and all(r is not None for r in results):
            _record(workdir, shards)
    return _conclude(results, time.monotonic() - began)


def _record(workdir: Path, shards: list[Shard]) -> None:
    seconds: dict[str, float] = {}
    for shard in shards:
        seconds.update(file_seconds(_junit_report(workdir, shard.index)))
    DURATIONS.write_text(
        json.dumps({k: round(v, 1) for k, v in sorted(seconds.items())}, indent=1) + "\n"
    )
    print(f"   recorded {len(seconds)} files' durations in {DURATIONS.relative_to(ROOT)}")


def _conclude(results: list[ShardResult | None], elapsed: float) -> int:
    done = [r for r in results if r is not None]
    tests = sum(r.tests for r in done)
    failed = sum(r.failures + r.errors for r in done)
    lost = len(results) - len(done)
    verdict = "passed" if all(r.ok for r in done) and lost == 0 else "FAILED"
    print(
        f"== suite {verdict}: {tests} tests, {failed} failed or in error, "
        f"{lost} shards without a report, in {elapsed:.0f} s, {len(results)} shards"
    )
    return 0 if verdict == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
