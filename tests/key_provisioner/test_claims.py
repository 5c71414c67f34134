"""Claiming background work: a claimed push is leased, and replicas skip locked rows."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import select

from elock_testkit.ports import free_udp_port
from key_provisioner.db.models import Lock
from key_provisioner.services import audit, revocations
from tests.key_provisioner.conftest import Api


def test_a_claimed_push_is_not_claimed_again(admin: Api) -> None:
    lock = admin.enrol(port=free_udp_port())["lock"]
    key = admin.issue(lock["id"], admin.register_se()["id"])
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    now = dt.datetime.now(dt.UTC)
    with state.sessions() as one, state.sessions() as two:
        jobs = revocations.claim_due_pushes(one, state.box, now=now, lease=30, limit=10)
        assert [(str(j.lock_id), j.version, j.revoked) for j in jobs] == [
            (lock["id"], 1, [key["key_id"]])
        ]
        assert revocations.claim_due_pushes(two, state.box, now=now, lease=30, limit=10) == []
        # The lease ran out (a worker died mid-push): the push is due again.
        later = now + dt.timedelta(seconds=31)
        again = revocations.claim_due_pushes(two, state.box, now=later, lease=30, limit=10)
        assert [j.version for j in again] == [1]


@pytest.mark.peer
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replicas_skip_rows_another_replica_holds(admin: Api) -> None:
    lock = admin.enrol(port=free_udp_port())["lock"]
    key = admin.issue(lock["id"], admin.register_se()["id"])
    admin.ok("POST", f"/keys/{key['id']}/revoke")
    state = admin.client.app.state.elock  # type: ignore[attr-defined]
    now = dt.datetime.now(dt.UTC)
    with state.sessions() as holder, state.sessions() as other:
        # Another replica is in the middle of claiming this lock.
        holder.scalars(select(Lock).where(Lock.id == uuid.UUID(lock["id"])).with_for_update()).one()
        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(
                revocations.claim_due_pushes(other, state.box, now=now, lease=30, limit=10)
            )
        )
        thread.start()
        thread.join(5)
        assert not thread.is_alive(), "the claim waited for the row lock instead of skipping it"
        assert result == [[]]
        assert audit.claim_due_pulls(other, state.box, now=now, lease=30, limit=10) == []
        holder.rollback()
        assert len(revocations.claim_due_pushes(other, state.box, now=now, lease=30, limit=10)) == 1
