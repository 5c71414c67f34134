"""The CoAP admin client: whatever a lock answers, only ``LockAdminError`` escapes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elock_common import LockSecret
from key_provisioner.lock_admin import AdminSession, LockAdminError, _audit_row, _version
from tests.key_provisioner.conftest import free_udp_port

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
