"""Issuing a key while its lock is being retired never leaves a live key on a retired lock.

Retiring revokes every key of the lock in its transaction. An issue that had read the
lock as in service just before must either wait for the retire and be refused, or be
seen (and revoked) by it: on PostgreSQL the issue read the lock without a row lock, so
a retire could commit between that read and the key's insert.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from key_provisioner.services import keys, locks
from tests.key_provisioner.conftest import Api, service_actor


class Retirer:
    """Retires the lock from another thread, as a second admin's request would."""

    def __init__(self, admin: Api, lock_id: str) -> None:
        self.state = admin.client.app.state.elock  # type: ignore[attr-defined]
        self.actor = service_actor(admin.client)
        self.lock_id = lock_id
        self.retired = threading.Event()
        self.thread = threading.Thread(target=self._retire, daemon=True)

    def _retire(self) -> None:
        with self.state.sessions() as session:
            locks.retire(session, uuid.UUID(self.lock_id), actor=self.actor)
        self.retired.set()

    def issue_and_finish(self, admin: Api, se_id: str) -> Any:
        """``POST /keys`` on the lock, then wait for the retire to have ended."""
        body = {"lock_id": self.lock_id, "secure_element_id": se_id}
        response = admin.post("/keys", json=body)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        assert self.retired.is_set()
        return response


def assert_no_live_key(
    admin: Api, response: Any, lock_id: str, reason: str | None = "lock retired"
) -> None:
    """Refused as retired, or issued and revoked by the retire: no active key is left."""
    if response.status_code == 409:
        assert response.json()["type"] == "urn:elock:problem:lock-retired"
    else:
        assert response.status_code == 201, response.text
        key = admin.ok("GET", f"/keys/{response.json()['id']}")
        assert key["state"] == "revoked", key
        if reason is not None:
            assert key["revoke_reason"] == reason
    live = admin.ok("GET", "/keys", params={"lock_id": lock_id, "state": "active"})
    assert live["items"] == []


def test_a_retire_between_reading_the_lock_and_inserting_the_key(
    admin: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_id = admin.enrol()["lock"]["id"]
    se_id = admin.register_se()["id"]
    retirer = Retirer(admin, lock_id)
    real_unseal = locks.unseal

    def unseal_then_retire(box: Any, lock: Any) -> Any:
        secret = real_unseal(box, lock)
        retirer.thread.start()
        # PostgreSQL: the retire can finish now unless the issue holds the lock's row.
        # SQLite: writers are serialized, so it waits for the issue's commit.
        retirer.retired.wait(timeout=2)
        return secret

    monkeypatch.setattr(keys.locks, "unseal", unseal_then_retire)
    response = retirer.issue_and_finish(admin, se_id)
    assert_no_live_key(admin, response, lock_id)


def test_a_retire_while_a_clashing_key_id_is_minted_again(
    admin: Api, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The same race on the rare path where the first key id clashed: the rollback lets
    the lock's row go, so the retry must hold it again and see the retire."""
    lock_id = admin.enrol()["lock"]["id"]
    se_id = admin.register_se()["id"]
    real_mint = keys.mint_key
    minted: list[Any] = []

    def recording_mint(*args: Any, **kwargs: Any) -> Any:
        minted.append(real_mint(*args, **kwargs))
        return minted[-1]

    monkeypatch.setattr(keys, "mint_key", recording_mint)
    admin.issue(lock_id, se_id)  # its key id is the one the next issue will clash with
    retirer = Retirer(admin, lock_id)
    calls = 0

    def clash_then_mint(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            retirer.thread.start()
            retirer.retired.wait(timeout=2)  # PostgreSQL: waits for the issue's row lock
            return minted[0]  # the first key's id again: the insert fails
        if not database_url.startswith("sqlite"):  # SQLite serializes writers: no race
            retirer.retired.wait(timeout=10)  # without the row held again, it commits first
        return real_mint(*args, **kwargs)

    monkeypatch.setattr(keys, "mint_key", clash_then_mint)
    response = retirer.issue_and_finish(admin, se_id)
    assert calls >= 1
    assert_no_live_key(admin, response, lock_id, reason=None)
