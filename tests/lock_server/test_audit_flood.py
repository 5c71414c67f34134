"""The lock's audit under a flood of unauthenticated handshakes, and its pruning."""

from __future__ import annotations

import json
import subprocess

import pytest

from elock_testkit.handshake_flood import flood
from elock_testkit.lockproc import ELOCK_LOCK, LockProcess, _env, cli, coap
from lock_server.refusals import MAX_CAUSES, ROWS_PER_CAUSE, RefusalDigest
from lock_server.store import LockStore


@pytest.mark.peer
def test_flood_of_failed_handshakes_grows_the_audit_by_a_bounded_amount(
    lock: LockProcess,
) -> None:
    before = len(lock.audit())
    result = flood(("127.0.0.1", lock.port), rate=300, seconds=4)
    assert result.refused_identity_sent >= 300, result  # the refusal path was reached
    # The lock still opens for a real key while (and after) it was flooded.
    assert "opened" in coap("coap-client-openssl", "post", lock.mint(), lock.uri)
    lock.stop()  # ends the period: the summary rows are written on the way out
    rows = lock.audit()[before:]
    handshake = [r for r in rows if r["action"] == "handshake"]
    # Before aggregation: one row per refusal (>= 300). Now: a few per cause and period.
    assert 0 < len(handshake) <= MAX_CAUSES * (ROWS_PER_CAUSE + 1), len(handshake)
    summaries = [r for r in handshake if "not written one by one" in r["reason"]]
    counted = sum(int(r["reason"].split(": ")[-1].split(" more")[0]) for r in summaries)
    assert counted + len(handshake) - len(summaries) >= result.refused_identity_sent * 0.9
    assert all(len(r["peer"]) <= 100 and r["peer"].startswith("127.0.0.1:") for r in summaries)
    log = (lock.directory / "lock.log").read_text()
    assert log.count("handshake refused") <= MAX_CAUSES * (ROWS_PER_CAUSE + 1)


def test_digest_bounds_rows_per_period_whatever_the_causes() -> None:
    digest = RefusalDigest(period=60)
    rows = []
    for i in range(10_000):
        rows += digest.record(
            1000 + i * 0.001, peer=f"10.0.0.{i % 250}:{i}", key_id=None, action="handshake",
            reason=f"handshake refused: malformed identity (unsupported format version {i % 256})",
        )  # fmt: skip
    rows += digest.flush(1010)
    assert len(rows) <= MAX_CAUSES * (ROWS_PER_CAUSE + 1) + 1
    assert digest.record(2000, peer="p", key_id="k", action="a", reason="r")  # a new period


def test_watermark_only_moves_forward_and_never_past_written_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LockStore(tmp_path / "s.db")
    for i in range(10):
        store.audit(key_id=None, peer="p", action="open", granted=True, reason=str(i))
    assert store.audit_delivered_through() == 0
    assert store.mark_audit_delivered(4) == 4
    assert store.mark_audit_delivered(2) == 4  # never back
    assert store.mark_audit_delivered(10**12) == 10  # never past the last row written
    store.audit(key_id=None, peer="p", action="open", granted=True, reason="late")
    assert store.audit_delivered_through() == 10


def test_prune_never_deletes_undelivered_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LockStore(tmp_path / "s.db")
    for i in range(20):
        store.audit(key_id=None, peer="p", action="open", granted=True, reason=str(i))
    result = store.prune_audit(5)
    assert (result.deleted, result.kept, result.undelivered) == (0, 20, 20)
    store.mark_audit_delivered(12)
    result = store.prune_audit(5)
    assert (result.deleted, result.kept) == (12, 8)  # rows 13..20 were never confirmed
    assert [r.id for r in store.audit_rows(0)] == list(range(13, 21))
    store.mark_audit_delivered(20)
    assert store.prune_audit(5).kept == 5
    assert [r.id for r in store.audit_rows(0)] == list(range(16, 21))
    with pytest.raises(ValueError):
        store.prune_audit(-1)


@pytest.mark.peer
def test_audit_prune_command_and_the_key_servers_pull(lock: LockProcess) -> None:
    """The key server's pull (`since=N`) confirms rows; `audit prune` then bounds them."""
    key, admin = lock.mint(), lock.mint("--admin", "--no-open")
    for _ in range(3):
        assert "opened" in coap("coap-client-openssl", "post", key, lock.uri)
    ids = [r["id"] for r in lock.audit()]
    assert len(ids) >= 3
    audit_uri = lock.uri.replace("/lock", f"/admin/audit?since={ids[1]}")
    out = coap("coap-client-openssl", "get", admin, audit_uri)
    assert json.loads(out.strip().splitlines()[-1])[0]["id"] == ids[2]
    assert lock.status()["audit_delivered_through"] == ids[1]
    done = subprocess.run(
        [*ELOCK_LOCK, "audit", "prune", "--config", str(lock.config), "--max-rows", "0"],
        capture_output=True, text=True, env=_env(), timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 row(s) deleted" in done.stdout and "not yet confirmed" in done.stderr
    assert lock.audit()[0]["id"] == ids[2]
    bad = subprocess.run(
        [*ELOCK_LOCK, "audit", "prune", "--config", str(lock.config), "--max-rows", "-1"],
        capture_output=True, text=True, env=_env(), timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "--max-rows" in bad.stderr
    assert "audit_rows" in cli(["status", "--config", str(lock.config), "--json"])
