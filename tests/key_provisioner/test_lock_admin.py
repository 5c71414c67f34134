"""The CoAP admin client: whatever a lock answers, only ``LockAdminError`` escapes."""

from __future__ import annotations

import time
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elock_common import LockSecret
from elock_testkit.ports import free_udp_port
from key_provisioner.lock_admin import AdminSession, LockAdminError, _audit_row, _version
from key_provisioner.services.audit import LockAuditRow, same_row

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
rows = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(-5, 2**60) | json_values,
        "ts": st.floats(allow_nan=True) | st.integers() | json_values,
        "key_id": st.sampled_from(["0123456789ab", "XYZ", None]) | json_values,
        "peer": json_values,
        "action": json_values,
        "outcome": st.sampled_from(["granted", "refused", "maybe"]) | json_values,
        "reason": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(rows | json_values)
def test_audit_rows_parse_or_raise_our_error(item: Any) -> None:
    try:
        row = _audit_row(item)
    except LockAdminError:
        return
    assert isinstance(row.id, int) and row.id >= 0
    assert row.outcome in ("granted", "refused")
    assert 0 <= row.ts < 2**32
    assert row.key_id is None or len(row.key_id) == 12
    assert all(isinstance(t, str) for t in (row.peer, row.action, row.reason))


@settings(max_examples=200, deadline=None)
@given(json_values | st.fixed_dictionaries({"version": json_values}))
def test_versions_parse_or_raise_our_error(body: Any) -> None:
    try:
        version = _version(body)
    except LockAdminError:
        return
    assert isinstance(version, int) and not isinstance(version, bool) and version >= 0


def test_odd_audit_fields_are_kept_without_stalling() -> None:
    row = _audit_row(
        {
            "id": 7,
            "ts": float("nan"),
            "key_id": "not hex",
            "peer": 5,
            "action": "open",
            "outcome": "exploded",
            "reason": None,
        }
    )
    assert (row.id, row.ts, row.key_id, row.peer, row.outcome) == (7, 0.0, None, "5", "refused")
    assert "exploded" in row.reason
    with pytest.raises(LockAdminError, match="valid id"):
        _audit_row({"id": -1})
    with pytest.raises(LockAdminError, match="valid id"):
        _audit_row({"id": True})


async def test_unreachable_lock_is_our_error_and_quick() -> None:
    started = time.monotonic()
    with pytest.raises(LockAdminError, match=r"127\.0\.0\.1"):
        async with AdminSession(
            "127.0.0.1", free_udp_port(), LockSecret.generate(), timeout=3
        ) as session:
            await session.push_revocations(1, [])
    assert time.monotonic() - started < 4


class _Log(AdminSession):
    """The admin client over a list of rows instead of a lock: what ``read_audit`` asks."""

    def __init__(self, rows: list[LockAuditRow]) -> None:
        super().__init__("127.0.0.1", 1, LockSecret.generate(), timeout=1)
        self.rows = rows
        self.asked: list[int] = []

    async def audit_page(self, since: int, limit: int) -> list[LockAuditRow]:
        self.asked.append(since)
        return [row for row in self.rows if row.id > since][:limit]


def _rows(ids: range, *, life: float = 1000.0) -> list[LockAuditRow]:
    return [LockAuditRow(i, life + i, None, "192.0.2.1:5", "open", "granted", "") for i in ids]


CURSOR = 10
ANCHOR = _rows(range(CURSOR, CURSOR + 1))[0]


@pytest.mark.parametrize(
    ("log", "restarted", "asked"),
    [
        (_rows(range(1, 13)), None, [9]),  # rows after the cursor: one exchange, as before
        (_rows(range(1, 11)), None, [9]),  # nothing new
        ([], None, [9, 0]),  # everything pruned: nothing to tell
        (_rows(range(11, 14)), None, [9, 0]),  # pruned up to the cursor, new rows since
        (_rows(range(1, 4), life=5000), "rows below 10 but not row 10", [9, 0, 0]),  # wiped
        (_rows(range(1, 30), life=5000), "row 10 is not the one pulled", [9, 0]),  # replaced
        (_rows(range(1, 11)) + _rows(range(11, 15), life=5000), None, [9]),  # restored backup
    ],
    ids=["new", "idle", "pruned", "pruned-new", "wiped", "replaced", "backup-of-now"],
)
async def test_read_audit_tells_a_log_that_started_again(
    log: list[LockAuditRow], restarted: str | None, asked: list[int]
) -> None:
    lock = _Log(log)
    read = await lock.read_audit(CURSOR, ANCHOR)
    assert lock.asked == asked
    if restarted is None:
        assert read.restarted is None
        assert [row.id for row in read.rows] == [row.id for row in log if row.id >= CURSOR]
    else:
        assert read.restarted is not None and restarted in read.restarted
        assert read.rows == log  # read again from the start


async def test_read_audit_from_the_start_and_without_an_anchor() -> None:
    lock = _Log(_rows(range(1, 4)))
    assert (await lock.read_audit(0, None)).rows == lock.rows and lock.asked == [0]
    other_life = _Log(_rows(range(1, 12), life=5000))
    read = await other_life.read_audit(CURSOR, None)  # nothing stored to compare with
    assert read.restarted is None and [row.id for row in read.rows] == [10, 11]


def test_same_row_compares_what_is_stored() -> None:
    row = LockAuditRow(3, 1700000000.123456, "0123456789ab", "p" * 150, "open", "granted", "r")
    stored = LockAuditRow(3, 1700000000.1234561, "0123456789ab", "p" * 100, "open", "granted", "r")
    assert same_row(stored, row)
    assert not same_row(stored, LockAuditRow(3, row.ts + 0.01, *astuple(row)[2:]))
    assert not same_row(stored, LockAuditRow(3, row.ts, None, *astuple(row)[3:]))
    assert not same_row(stored, LockAuditRow(4, row.ts, *astuple(row)[2:]))
