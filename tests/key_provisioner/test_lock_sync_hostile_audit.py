"""Audit rows with hostile text, uploaded by a lock over ``/sync/lock``.

A lock's audit text (``peer``, ``action``, ``reason``) is checked for length
only: it may carry anything a lock wrote, some of it from the peers that
talked to the lock. PostgreSQL's ``text`` refuses NUL, so a row holding one
must neither end the lock's connection with a server error nor stall its
audit delivery for good (the lock sends the same rows again on every connection).
Nor may a lone surrogate (valid JSON, not UTF-8). The server stores such
characters, and every other control character, as U+FFFD, on both databases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from elock_common.lock_sync import AuditRow
from elock_testkit.synclock import LightLock
from elock_testkit.waiting import async_wait_for
from tests.key_provisioner.test_lock_sync_endpoint import Server, sync_keyserver

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    with sync_keyserver(tmp_path / "keyserver", database_url) as server:
        yield server


async def test_a_nul_in_an_audit_row_is_stored_and_the_lock_stays_connected(
    server: Server,
) -> None:
    lock_id, secret = server.enrol("hostile-audit")
    lock = LightLock(lock_id, secret, ping_seconds=1.0)
    await lock.connect(server.sync_url)
    try:
        await asyncio.wait_for(lock.synced.wait(), 5)
        assert lock.session is not None and lock.session.audit_after() == 0
        now = time.time()
        rows = [
            AuditRow(
                1, now, None, "198.51.100.9\x00:1", "open\ud800", "refused", "bad\x00key\x1b[2J"
            ),
            AuditRow(2, now, None, "198.51.100.9:2", "open", "refused", "plain"),
        ]
        lock.session.upload(rows)
        await lock._flush()
        await async_wait_for(
            lambda: server.ok("GET", f"/locks/{lock_id}")["audit_cursor"] == 2 or lock.closed,
            5,
            "the key server's audit cursor at 2",
        )
        assert lock.closed is None, lock.closed
        items = server.ok("GET", f"/locks/{lock_id}/audit")["items"]
        assert [i["lock_entry_id"] for i in items] == [2, 1]
        assert items[1]["reason"] == "bad\ufffdkey\ufffd[2J"
        assert (items[1]["peer"], items[1]["action"]) == ("198.51.100.9\ufffd:1", "open\ufffd")
        assert lock.closed is None, lock.closed
    finally:
        await lock.close()
