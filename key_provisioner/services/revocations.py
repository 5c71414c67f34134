"""Revocation versions of each lock: the list the server wants the lock to hold.

A revoke moves the lock's ``revocation_version`` (``services.keys``); the
transaction's commit wakes the connection the lock holds, in whichever
key-server process (``key_provisioner.sync.notify``), and that connection
sends the list and records the version the lock confirms
(``services.lock_sync``). Nothing is pushed to a lock: it dials the server.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.orm import Session

from key_provisioner.db.models import Lock
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.services import admin_audit, locks
from key_provisioner.services.admin_audit import Actor


def push_full_list(session: Session, lock_id: uuid.UUID, *, actor: Actor, now: dt.datetime) -> Lock:
    """An admin asks for the lock's full list to be sent now, without a revoke."""
    lock = locks.get_active(session, lock_id, for_update=True)
    schedule_full_push(lock, now)
    detail = f"version {lock.revocation_version}"
    admin_audit.record(
        session, actor, Action.LOCK_PUSH_REVOCATIONS, now=now, lock_id=lock.id, detail=detail
    )
    session.commit()
    return lock


def schedule_full_push(lock: Lock, now: dt.datetime) -> None:
    """Under the lock's row lock: number the full list so that the lock takes it whatever
    it holds (as far as the server knows); the commit wakes its connection."""
    lock.revocation_version = max(lock.revocation_version, lock.confirmed_version) + 1
    lock.push_due_at = now
    lock.push_attempts = 0
