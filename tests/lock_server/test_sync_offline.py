"""A lock whose key server cannot be reached serves with its last list, and says so."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from elock_testkit.liveserver import free_tcp_port
from elock_testkit.lockproc import LockProcess, coap
from lock_server.store import LockStore
from tests.conftest import require_tool

pytestmark = pytest.mark.peer


def test_unreachable_key_server_means_offline_with_the_last_list(tmp_path: Path) -> None:
    require_tool("coap-client-openssl")
    lock = LockProcess.create(tmp_path / "lock")
    nobody = free_tcp_port()  # nothing listens here
    with open(lock.config, "a") as config:
        config.write(
            f'\n[sync]\nurl = "ws://127.0.0.1:{nobody}/sync/lock"\nlock_id = "{uuid.uuid4()}"\n'
            "start_wait_seconds = 1.0\nreconnect_max_seconds = 2.0\n"
        )
    revoked, kept = lock.mint(), lock.mint()
    store = LockStore(lock.data_dir / "lock.sqlite3")
    store.replace_revocations(4, [revoked.key_id])  # the list it got before the outage
    store.close()
    started = time.monotonic()
    lock.start()
    try:
        assert time.monotonic() - started >= 1.0  # it waited for the key server first
        out = coap("coap-client-openssl", "post", revoked, lock.uri)
        assert "key revoked" in out and "opened" not in out, out
        assert "opened" in coap("coap-client-openssl", "post", kept, lock.uri)
        sync = lock.status()["sync"]
        assert sync["connected"] is False and sync["revocation_version"] == 4
        assert "cannot reach the key server" in sync["last_error"]
        assert (
            "serving offline with revocation list version 4"
            in (lock.directory / "lock.log").read_text()
        )
    finally:
        lock.stop()
