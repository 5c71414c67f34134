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


def test_a_retire_between_reading_the_lock_and_inserting_the_key(
    admin: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_id = admin.enrol()["lock"]["id"]
    se_id = admin.register_se()["id"]
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    actor = service_actor(admin.client)
    retired = threading.Event()

    def retire() -> None:
        with state.sessions() as session:
            locks.retire(session, uuid.UUID(lock_id), actor=actor)
        retired.set()

    retirer = threading.Thread(target=retire, daemon=True)
    real_unseal = locks.unseal

    def unseal_then_retire(box: Any, lock: Any) -> Any:
        secret = real_unseal(box, lock)
        retirer.start()
        # PostgreSQL: the retire can finish now unless the issue holds the lock's row.
        # SQLite: writers are serialized, so it waits for the issue's commit.
        retired.wait(timeout=2)
        return secret

    monkeypatch.setattr(keys.locks, "unseal", unseal_then_retire)
    response = admin.post("/keys", json={"lock_id": lock_id, "secure_element_id": se_id})
    retirer.join(timeout=30)
    assert not retirer.is_alive()
    assert retired.is_set()
    if response.status_code == 409:
        assert response.json()["type"] == "urn:elock:problem:lock-retired"
    else:
        assert response.status_code == 201, response.text
        key = admin.ok("GET", f"/keys/{response.json()['id']}")
        assert key["state"] == "revoked", key
        assert key["revoke_reason"] == "lock retired"
    live = admin.ok("GET", "/keys", params={"lock_id": lock_id, "state": "active"})
    assert live["items"] == []


def test_a_retire_while_a_clashing_key_id_is_minted_again(
    admin: Api, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The same race on the rare path where the first key id clashed: the rollback lets
    the lock's row go, so the retry must hold it again and see the retire."""
    lock_id = admin.enrol()["lock"]["id"]
    se_id = admin.register_se()["id"]
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    actor = service_actor(admin.client)
    real_mint = keys.mint_key
    minted: list[Any] = []

    def recording_mint(*args: Any, **kwargs: Any) -> Any:
        minted.append(real_mint(*args, **kwargs))
        return minted[-1]

    monkeypatch.setattr(keys, "mint_key", recording_mint)
    admin.issue(lock_id, se_id)  # its key id is the one the next issue will clash with
    retired = threading.Event()

    def retire() -> None:
        with state.sessions() as session:
            locks.retire(session, uuid.UUID(lock_id), actor=actor)
        retired.set()

    retirer = threading.Thread(target=retire, daemon=True)
    calls = 0

    def clash_then_mint(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            retirer.start()
            retired.wait(timeout=2)  # PostgreSQL: waits for the issue's row lock
            return minted[0]  # the first key's id again: the insert fails
        if not database_url.startswith("sqlite"):  # SQLite serializes writers: no race
            retired.wait(timeout=10)  # without the row held again, the retire commits first
        return real_mint(*args, **kwargs)

    monkeypatch.setattr(keys, "mint_key", clash_then_mint)
    response = admin.post("/keys", json={"lock_id": lock_id, "secure_element_id": se_id})
    retirer.join(timeout=30)
    assert not retirer.is_alive() and retired.is_set()
    assert calls >= 1
    if response.status_code == 409:
        assert response.json()["type"] == "urn:elock:problem:lock-retired"
    else:
        assert response.status_code == 201, response.text
        key = admin.ok("GET", f"/keys/{response.json()['id']}")
        assert key["state"] == "revoked", key
    live = admin.ok("GET", "/keys", params={"lock_id": lock_id, "state": "active"})
    assert live["items"] == []
