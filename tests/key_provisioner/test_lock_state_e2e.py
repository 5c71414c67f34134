"""A real lock whose state is not the one the key server knows, against the worker.

The key server runs in process (its worker pushes and pulls over CoAP/DTLS); the
lock is ``elock-lock serve`` in its own process, installed from its enrolment
bundle, with its state file prepared or replaced as an operator (or a failing SD
card) would: a revocation version from an earlier life, a state directory wiped, a
state file put back from an older backup. Keys are tried with libcoap's client.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from elock_testkit.lockproc import Key, LockProcess, cli, coap
from elock_testkit.ports import free_udp_port
from key_provisioner.core.config import WorkerSettings
from lock_server.store import LockStore
from tests.conftest import require_tool
from tests.key_provisioner.conftest import FAST_WORKER, Api
from tests.key_provisioner.test_revocation_push import wait_for

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return FAST_WORKER


@pytest.fixture
def real_lock(admin: Api, tmp_path: Path) -> Iterator[tuple[str, LockProcess]]:
    """An enrolled lock, installed from its bundle (not started: a test may prepare it)."""
    require_tool("coap-client-openssl")
    enrolled = admin.enrol("real-door", port=free_udp_port())
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(enrolled["bundle"]))
    directory = tmp_path / "lock"
    cli(["init", "--dir", str(directory), "--bundle", str(bundle)])
    config = directory / "lock.toml"
    config.write_text(config.read_text().replace("open_seconds = 5.0", "open_seconds = 0.2"))
    lock = LockProcess(directory, enrolled["lock"]["port"])
    try:
        yield enrolled["lock"]["id"], lock
    finally:
        lock.stop()


def _key(issued: dict[str, Any]) -> Key:
    return Key(issued["identity"], issued["psk"], issued["key_id"])


def _open(lock: LockProcess, issued: dict[str, Any]) -> str:
    return coap("coap-client-openssl", "post", _key(issued), lock.uri)


def _state_file(lock: LockProcess) -> Path:
    return lock.data_dir / "lock.sqlite3"


def _lock_ids(lock: LockProcess) -> list[int]:
    return [row["id"] for row in lock.audit()]


def _pulled(admin: Api, lock_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = admin.ok("GET", f"/locks/{lock_id}/audit", params=params)
        rows += page["items"]
        if not (cursor := page["next_cursor"]):
            return rows


def _settled(admin: Api, lock_id: str, lock: LockProcess) -> Callable[[], Any]:
    """The list confirmed and every row of the lock pulled (a push logs a row, and the
    pull after it may find more to do)."""

    def check() -> Any:
        shown = admin.ok("GET", f"/locks/{lock_id}")
        ids = _lock_ids(lock)
        done = shown["revocation"]["in_sync"] and shown["audit_cursor"] == max(ids, default=0)
        return shown if done else None

    return check


def _pull(admin: Api, lock_id: str, lock: LockProcess) -> dict[str, Any]:
    admin.ok("POST", f"/locks/{lock_id}/audit/pull", 202)
    return wait_for(_settled(admin, lock_id, lock))  # type: ignore[no-any-return]


def test_a_lock_holding_a_higher_version_takes_the_servers_list(
    admin: Api, real_lock: tuple[str, LockProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """A Pi enrolled again keeping its state directory, or a key server restored from a
    backup: the lock holds version 5, the server is at 0. The server's list must win."""
    lock_id, lock = real_lock
    store = LockStore(_state_file(lock))
    store.replace_revocations(5, ["aaaaaaaaaaaa", "bbbbbbbbbbbb"])  # from an earlier life
    store.close()
    lock.start()
    se = admin.register_se()
    kept, lost = (admin.issue(lock_id, se["id"], label=name) for name in ("kept", "lost"))
    assert "opened" in _open(lock, lost)

    with caplog.at_level(logging.WARNING, logger="key_provisioner.worker"):
        admin.ok("POST", f"/keys/{lost['id']}/revoke", json={"reason": "lost"})
        shown = wait_for(_settled(admin, lock_id, lock))

    revocation = shown["revocation"]
    assert revocation["version"] == revocation["confirmed_version"] == 6, revocation
    status = lock.status()
    assert (status["revocation_version"], status["revoked_keys"]) == (6, 1)
    store = LockStore(_state_file(lock))
    try:
        assert store.is_revoked(lost["key_id"]) and not store.is_revoked("aaaaaaaaaaaa")
    finally:
        store.close()
    refused = _open(lock, lost)
    assert "4.01" in refused and "key revoked" in refused and "opened" not in refused, refused
    assert "opened" in _open(lock, kept)
    assert any(
        "held revocation version 5 (2 key(s)), above the server's 1" in r.getMessage()
        and "as version 6" in r.getMessage()
        for r in caplog.records
    ), caplog.text


def test_a_wiped_state_directory_is_pulled_from_its_first_row(
    admin: Api, real_lock: tuple[str, LockProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """A new SD card: the lock's audit row ids start again at 1, below the server's
    cursor. Its rows are pulled all the same, and its lost list is pushed again."""
    lock_id, lock = real_lock
    lock.start()
    se = admin.register_se()
    key, revoked = (admin.issue(lock_id, se["id"], label=name) for name in ("key", "revoked"))
    for _ in range(3):
        assert "opened" in _open(lock, key)
    admin.ok("POST", f"/keys/{revoked['id']}/revoke")
    before = _pull(admin, lock_id, lock)
    old_rows = _pulled(admin, lock_id)
    assert before["audit_generation"] == 0 and before["audit_cursor"] >= 4

    lock.stop()
    shutil.rmtree(lock.data_dir)  # the state directory is gone: a new, empty one
    lock.start()
    assert "opened" in _open(lock, key)
    assert "opened" in _open(lock, revoked)  # the lock's revocation list went with its state
    assert max(_lock_ids(lock)) < before["audit_cursor"]

    with caplog.at_level(logging.WARNING, logger="key_provisioner.worker"):
        after = _pull(admin, lock_id, lock)
    assert after["audit_generation"] == 1
    assert after["revocation"]["version"] > before["revocation"]["version"]
    refused = _open(lock, revoked)
    assert "key revoked" in refused and "opened" not in refused, refused

    _pull(admin, lock_id, lock)
    rows = _pulled(admin, lock_id)
    new = sorted(r["lock_entry_id"] for r in rows if r["audit_generation"] == 1)
    assert new == _lock_ids(lock)  # every row of the new log, none skipped
    assert [r for r in rows if r["audit_generation"] == 0] == old_rows  # history kept
    opens = [r for r in rows if r["audit_generation"] == 1 and r["action"] == "open"]
    assert [(r["key_id"], r["outcome"]) for r in sorted(opens, key=lambda r: r["id"])][:2] == [
        (key["key_id"], "granted"),
        (revoked["key_id"], "granted"),
    ]
    assert any("audit log started again" in r.getMessage() for r in caplog.records), caplog.text


def test_a_state_file_restored_from_an_older_backup(
    admin: Api, real_lock: tuple[str, LockProcess]
) -> None:
    """The lock's state put back from a backup older than what the server pulled, and the
    lock busy enough to log past the server's cursor before the next pull: its row at the
    cursor is another one. Rows that came back with the backup are not stored twice."""
    lock_id, lock = real_lock
    lock.start()
    key = admin.issue(lock_id, admin.register_se()["id"])
    for _ in range(2):
        assert "opened" in _open(lock, key)
    at_backup = _pull(admin, lock_id, lock)["audit_cursor"]
    backup = lock.directory / "backup.sqlite3"
    with closing(sqlite3.connect(_state_file(lock))) as db, closing(sqlite3.connect(backup)) as out:
        db.backup(out)  # as lock-db.py backup does, while the lock runs
    for _ in range(2):
        assert "opened" in _open(lock, key)
    before = _pull(admin, lock_id, lock)
    old_rows = _pulled(admin, lock_id)
    assert before["audit_cursor"] > at_backup

    lock.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{_state_file(lock)}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, _state_file(lock))
    lock.start()
    while max(_lock_ids(lock)) <= before["audit_cursor"]:  # past the server's cursor
        assert "opened" in _open(lock, key)

    after = _pull(admin, lock_id, lock)
    assert after["audit_generation"] == 1
    rows = _pulled(admin, lock_id)
    assert [r for r in rows if r["audit_generation"] == 0] == old_rows
    new = sorted(r["lock_entry_id"] for r in rows if r["audit_generation"] == 1)
    assert new == [i for i in _lock_ids(lock) if i > at_backup]  # only what the backup lacked
