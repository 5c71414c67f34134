"""The worker against a stand-in lock: pushes, acknowledgements, retries, audit pulls."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elock_common import Rights
from elock_testkit.ports import free_udp_port
from elock_testkit.waiting import wait_for
from key_provisioner.core.config import WorkerSettings
from key_provisioner.services import keys
from key_provisioner.services.keys import NewKey
from tests.key_provisioner.conftest import FAST_WORKER, Api, service_actor
from tests.key_provisioner.fakelock import FakeLock


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return FAST_WORKER


@pytest.fixture
def enrolled(admin: Api) -> dict[str, Any]:
    return admin.enrol("fake", port=free_udp_port())  # type: ignore[no-any-return]


@pytest.fixture
def fake_lock(
    enrolled: dict[str, Any], tmp_path: Path
) -> Iterator[tuple[dict[str, Any], FakeLock]]:
    lock = FakeLock(enrolled["bundle"]["secret"], enrolled["lock"]["port"], tmp_path / "fake")
    try:
        yield enrolled["lock"], lock.start()
    finally:
        lock.stop()


def test_push_sends_the_full_unexpired_list_and_records_the_ack(
    admin: Api, fake_lock: tuple[dict[str, Any], FakeLock]
) -> None:
    lock, fake = fake_lock
    se = admin.register_se()
    first, second, kept = (admin.issue(lock["id"], se["id"]) for _ in range(3))
    # A key that has expired by itself: revoking it must not grow the list.
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with state.sessions() as session:
        old, _, _ = keys.issue(
            session,
            state.box,
            NewKey(
                uuid.UUID(lock["id"]),
                uuid.UUID(se["id"]),
                not_after=yesterday + dt.timedelta(hours=1),
            ),
            actor=service_actor(admin.client),
            now=yesterday,
        )
    for key_uuid in (first["id"], second["id"], str(old.id)):
        admin.ok("POST", f"/keys/{key_uuid}/revoke")
    shown = wait_for(
        lambda: (s := admin.ok("GET", f"/locks/{lock['id']}"))["revocation"]["in_sync"] and s
    )
    fake_state = fake.state()
    assert shown["revocation"]["confirmed_version"] == 3 == fake_state["version"]
    assert shown["revocation"]["confirmed_at"] is not None
    assert shown["revocation"]["attempts"] == 0 and shown["revocation"]["last_error"] is None
    assert shown["last_seen_at"] is not None
    assert fake_state["revoked"] == sorted([first["key_id"], second["key_id"]])
    assert kept["key_id"] not in fake_state["revoked"]
    assert fake_state["pushes"][-1] == {"version": 3, "revoked": fake_state["revoked"]}
    # Each visit authenticates with a fresh, short-lived admin-only key.
    admin_keys = fake_state["admin_keys"]
    for claims in admin_keys:
        assert claims["rights"] == Rights.ADMIN
        assert claims["not_after"] - time.time() <= 300 + 5
    assert len({c["key_id"] for c in admin_keys}) == len(admin_keys)


def test_offline_lock_gets_the_list_when_it_comes_back(
    admin: Api, enrolled: dict[str, Any], tmp_path: Path
) -> None:
    lock = enrolled["lock"]
    se = admin.register_se()
    key = admin.issue(lock["id"], se["id"])
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    failing = wait_for(
        lambda: (s := admin.ok("GET", f"/locks/{lock['id']}"))["revocation"]["attempts"] >= 2 and s
    )
    revocation = failing["revocation"]
    assert revocation["last_error"] and revocation["in_sync"] is False
    assert revocation["next_attempt_at"] is not None
    fake = FakeLock(enrolled["bundle"]["secret"], lock["port"], tmp_path / "fake").start()
    try:
        wait_for(lambda: admin.ok("GET", f"/locks/{lock['id']}")["revocation"]["in_sync"])
        assert fake.state()["revoked"] == [key["key_id"]]
    finally:
        fake.stop()


def test_a_lock_holding_a_higher_version_gets_the_list_numbered_above_it(
    admin: Api, enrolled: dict[str, Any], tmp_path: Path
) -> None:
    """The lock ignores lists not above its version; the server's list must win all the
    same, and the lock is in sync only once it holds exactly the server's version."""
    lock = enrolled["lock"]
    fake = FakeLock(enrolled["bundle"]["secret"], lock["port"], tmp_path / "fake")
    fake.start(version=5)
    try:
        key = admin.issue(lock["id"], admin.register_se()["id"])
        admin.ok("POST", f"/keys/{key['id']}/revoke")
        shown = wait_for(
            lambda: (s := admin.ok("GET", f"/locks/{lock['id']}"))["revocation"]["in_sync"] and s
        )
        fake_state = fake.state()
    finally:
        fake.stop()
    assert [push["version"] for push in fake_state["pushes"]] == [1, 6]
    assert fake_state["version"] == 6 and fake_state["revoked"] == [key["key_id"]]
    revocation = shown["revocation"]
    assert revocation["version"] == revocation["confirmed_version"] == 6
    assert revocation["attempts"] == 0 and revocation["last_error"] is None


def test_a_lock_answering_below_the_pushed_version_is_retried(
    admin: Api, fake_lock: tuple[dict[str, Any], FakeLock]
) -> None:
    """A lock takes any list above its own: an answer below the pushed version is wrong."""
    lock, fake = fake_lock
    fake.set_mode("stuck")
    key = admin.issue(lock["id"], admin.register_se()["id"])
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    shown = wait_for(
        lambda: (s := admin.ok("GET", f"/locks/{lock['id']}"))["revocation"]["attempts"] >= 2 and s
    )
    assert "lock answered version 0 to a push of 1" in shown["revocation"]["last_error"]
    assert shown["revocation"]["in_sync"] is False
    fake.set_mode("ok")
    wait_for(lambda: admin.ok("GET", f"/locks/{lock['id']}")["revocation"]["in_sync"])


def test_push_now_sends_the_list_to_a_lock_in_sync(
    admin: Api, fake_lock: tuple[dict[str, Any], FakeLock]
) -> None:
    lock, fake = fake_lock
    key = admin.issue(lock["id"], admin.register_se()["id"])
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    wait_for(lambda: admin.ok("GET", f"/locks/{lock['id']}")["revocation"]["in_sync"])
    answered = admin.ok("POST", f"/locks/{lock['id']}/revocations/push")
    assert answered["revocation"]["version"] == 2
    wait_for(lambda: admin.ok("GET", f"/locks/{lock['id']}")["revocation"]["in_sync"])
    assert fake.state()["pushes"][-1] == {"version": 2, "revoked": [key["key_id"]]}


@pytest.mark.parametrize(("mode", "error"), [("unauthorized", "4.01"), ("garbage", "not JSON")])
def test_a_misbehaving_lock_is_retried_with_the_reason_shown(
    admin: Api, fake_lock: tuple[dict[str, Any], FakeLock], mode: str, error: str
) -> None:
    lock, fake = fake_lock
    fake.set_mode(mode)
    key = admin.issue(lock["id"], admin.register_se()["id"])
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    shown = wait_for(
        lambda: (s := admin.ok("GET", f"/locks/{lock['id']}"))["revocation"]["attempts"] >= 2 and s
    )
    assert error in shown["revocation"]["last_error"]
    assert shown["revocation"]["confirmed_version"] == 0
    fake.set_mode("ok")
    wait_for(lambda: admin.ok("GET", f"/locks/{lock['id']}")["revocation"]["in_sync"])


def test_audit_is_pulled_page_by_page_without_duplicates(
    admin: Api, auditor: Api, enrolled: dict[str, Any], tmp_path: Path
) -> None:
    lock = enrolled["lock"]
    key = admin.issue(lock["id"], admin.register_se()["id"])
    fake = FakeLock(enrolled["bundle"]["secret"], lock["port"], tmp_path / "fake")
    fake.start(audit_rows=1100, audit_key_id=key["key_id"], keyed_rows=3)
    try:
        admin.ok("POST", f"/locks/{lock['id']}/audit/pull", 202)
        wait_for(lambda: admin.ok("GET", f"/locks/{lock['id']}")["audit_cursor"] == 1103)
        requests = fake.state()["audit_requests"]
        assert [q[0] for q in requests[-3:]] == ["since=0", "since=500", "since=1000"]
        admin.ok("POST", f"/locks/{lock['id']}/audit/pull", 202)
        wait_for(lambda: len(fake.state()["audit_requests"]) >= 4)
    finally:
        fake.stop()
    rows, cursor = [], None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = auditor.ok("GET", f"/locks/{lock['id']}/audit", params=params)
        rows += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    assert [r["lock_entry_id"] for r in rows] == list(range(1103, 0, -1))
    mine = auditor.ok("GET", f"/keys/{key['id']}/audit")["items"]
    assert [r["lock_entry_id"] for r in mine] == [1103, 1102, 1101]
    assert mine[0]["outcome"] == "granted" and mine[0]["key_id"] == key["key_id"]
    everywhere = auditor.ok("GET", "/audit", params={"key_id": key["key_id"]})["items"]
    assert everywhere == mine
