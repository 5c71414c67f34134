"""The sharded suite runner: every test file runs exactly once, the load is spread, and a
JUnit report is read back into per-file seconds and a verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elock_testkit import suite


def test_every_file_lands_in_exactly_one_shard() -> None:
    files = suite.test_files()
    shards = suite.partition(files, {}, 3)
    placed = [name for shard in shards for name in shard.files]
    assert sorted(placed) == sorted(files) and len(placed) == len(set(placed))
    assert "tests/test_suite_shards.py" in placed


def test_the_longest_files_are_spread_first() -> None:
    seconds = {"a": 200.0, "b": 120.0, "c": 100.0, "d": 30.0, "e": 30.0}
    shards = suite.partition(list(seconds), seconds, 2)
    assert [s.files for s in shards] == [["a", "d"], ["b", "c", "e"]]
    assert [s.expected_seconds for s in shards] == [230.0, 250.0]


def test_more_shards_than_files_leaves_no_empty_shard() -> None:
    assert [s.files for s in suite.partition(["x"], {}, 4)] == [["x"]]
    assert [s.files for s in suite.partition(["x", "y"], {}, 0)] == [["x", "y"]]


def test_a_junit_report_becomes_seconds_per_file_and_a_verdict(tmp_path: Path) -> None:
    report = tmp_path / "shard.xml"
    report.write_text(
        '<?xml version="1.0"?><testsuites><testsuite tests="3" failures="1" errors="0"'
        ' skipped="0" time="4.5">'
        '<testcase classname="tests.test_suite_shards" name="one" time="1.25"/>'
        '<testcase classname="tests.test_suite_shards.TestGroup" name="two" time="2.0"/>'
        '<testcase classname="tests.no_such_module" name="three" time="1.25"/>'
        "</testsuite></testsuites>"
    )
    assert suite.file_seconds(report) == {"tests/test_suite_shards.py": 3.25}
    result = suite.summarize(report)
    assert (result.tests, result.failures, result.ok) == (3, 1, False)


def test_the_recorded_durations_name_only_existing_files() -> None:
    recorded = json.loads(suite.DURATIONS.read_text())
    assert set(recorded) <= set(suite.test_files())
    assert all(isinstance(v, float | int) and v >= 0 for v in recorded.values())


def test_a_bad_shard_count_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ELOCK_TEST_SHARDS", "three")
    with pytest.raises(SystemExit) as exited:
        suite.main([])
    assert exited.value.code == 2 and "whole number" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        suite.main(["--shards", "0"])
    assert exited.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_a_shard_whose_pytest_failed_fails_the_run_even_with_every_test_passed() -> None:
    passed = suite.ShardResult(tests=3, failures=0, errors=0, skipped=0, seconds=1.0)
    crashed = suite.ShardResult(tests=3, failures=0, errors=0, skipped=0, seconds=1.0, exit_code=3)
    assert suite._conclude([passed, passed], 2.0) == 0
    assert suite._conclude([passed, crashed], 2.0) == 1
    assert suite._conclude([passed, None], 2.0) == 1  # a shard that left no report


_HOLDS_THE_MACHINE = """
import os, socket, time

def test_holds_what_pcscd_and_vpcd_would_hold():
    assert os.listdir("/run/pcscd") == []  # an empty run directory of its own
    open("/run/pcscd/pcscd.comm", "w").close()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 35963))  # the vpcd port, in every shard at once
        held.listen()
        time.sleep(1.0)
"""


@pytest.mark.peer  # unshare, mount and two pytest processes; root, as in CI
def test_shards_hold_the_same_port_and_run_directory_side_by_side(tmp_path: Path) -> None:
    if not suite.can_isolate():
        pytest.fail("the sharded suite needs root and unshare: run the tests as root, as CI does")
    files = []
    for index in range(2):
        test = tmp_path / f"test_shard_{index}.py"
        test.write_text(_HOLDS_THE_MACHINE)
        files.append(str(test))
    shards = [suite.Shard(0, [files[0]], 1.0), suite.Shard(1, [files[1]], 1.0)]
    results = suite.run_shards(shards, tmp_path)
    assert all(r is not None and r.ok and r.tests == 1 for r in results), results


def test_progress_counts_the_tests_a_running_shard_has_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "shard-1.log"
    log.write_text("." * 72 + " [ 30%]\nprinted by a test\n..F.s")
    running = suite._Running(suite.Shard(1, ["a"]), None, log, tmp_path / "none.xml")  # type: ignore[arg-type]
    suite._progress([running], began=0.0)
    assert "shard 1 77 tests done" in capsys.readouterr().out
