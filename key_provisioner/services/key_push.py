"""A key's push state as an admin changes it: revoke, lock retired, retry.

The worker's and a host sync's transitions (done, retry later, failed) are in
``services.provisioning``; these are the ones a request causes. Both go
through the one table in ``push_lifecycle``. Each runs
with the key's row locked, inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from key_provisioner.core.errors import LockRetiredError, NotFoundError, PushNotRetryableError
from key_provisioner.db.engine import is_postgresql
from key_provisioner.db.models import Key, Lock, SecureElement
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.schemas.keys import PushState
from key_provisioner.services import admin_audit
from key_provisioner.services.admin_audit import Actor
from key_provisioner.services.push_lifecycle import PushEvent, next_state

HELD = (PushState.PENDING, PushState.INSTALLED, PushState.REMOVING)  # see CONTAINER_HELD

_NOT_FAILED = {
    PushState.PENDING: "pending: the worker installs it, and retries by itself",
    PushState.INSTALLED: "installed already",
    PushState.REMOVING: "removing",
    PushState.REMOVED: "removed",
}


def held_container_ids(session: Session, element_id: uuid.UUID) -> set[int]:
    """The container ids that live keys hold on this card, with the card's row locked.

    The row lock (PostgreSQL; SQLite serializes writers anyway) makes "find a
    free id, take it" atomic across workers and requests until the commit.
    ``FOR NO KEY UPDATE``: it does not hold up issuing a key for the card
    (whose foreign key check takes ``FOR KEY SHARE``).
    """
    if is_postgresql(session):
        session.execute(
            select(SecureElement.id)
            .where(SecureElement.id == element_id)
            .with_for_update(key_share=True)
        )
    held = session.scalars(
        select(Key.container_id).where(
            Key.secure_element_id == element_id,
            Key.container_id.is_not(None),
            Key.push_state.in_(HELD),
        )
    )
    return {n for n in held if n is not None}


def on_revoke(key: Key, now: dt.datetime) -> None:
    """Under the key's row lock, at its revoke: schedule the container's delete.

    A key that never got a container id, or whose install failed for good,
    never reached its card: it is simply ``removed`` (``push_error`` keeps
    why). Otherwise a delete is due (checked against the card's LIST first, so
    a container id that holds another key is left alone); a claim in flight
    keeps its lease and hands over when it ends; a key waiting out a retry's
    backoff is not in flight, and its delete is due now.
    """
    if key.push_state in (PushState.REMOVING, PushState.REMOVED):
        return
    if key.push_state == PushState.FAILED:  # nothing of it reached the card
        key.push_state = next_state(key.push_state, PushEvent.DROPPED)
        key.removed_at = now
        return
    if key.container_id is None:
        key.push_state = next_state(key.push_state, PushEvent.DROPPED)
        key.removed_at = now
        key.push_due_at = None
        key.push_error = None
        return
    in_flight = key.push_state == PushState.PENDING and key.push_leased
    key.push_state = next_state(key.push_state, PushEvent.REVOKED)
    key.push_due_at = max(now, key.push_due_at) if in_flight and key.push_due_at else now
    key.push_attempts = 0
    key.push_error = None


def retry(session: Session, key_uuid: uuid.UUID, *, actor: Actor, now: dt.datetime) -> Key:
    """Put a ``failed`` install back to ``pending`` (a failed delete to ``removing``), due now.

    Only the failed push of a key that is neither revoked nor expired, of a
    lock in service; anything else is refused with why (409). The key keeps
    its container id unless another key took that id meanwhile (a failed key
    holds none); then it gets the lowest free one at its next claim.
    """
    key = session.scalars(
        select(Key)
        .where(Key.id == key_uuid)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if key is None:
        raise NotFoundError(f"no key {key_uuid}")
    state = PushState(key.push_state)
    if key.revoked_at is not None and state is PushState.FAILED and key.container_id is not None:
        # A revoked key can only be failed by its delete: the container may still be on
        # the card. Retrying means deleting it again (checked against LIST first).
        key.push_state = next_state(state, PushEvent.RETRY_DELETE)
        key.push_due_at = now
        key.push_attempts = 0
        key.push_error = None
        _record_retry(session, actor, key, now)
        session.commit()
        return key
    if key.revoked_at is not None:
        raise PushNotRetryableError(
            f"key {key_uuid} is revoked: its container is not pushed again (push is {state})"
        )
    if state is not PushState.FAILED:
        raise PushNotRetryableError(
            f"only a failed push can be retried; the push of key {key_uuid} is {_NOT_FAILED[state]}"
        )
    lock = session.get(Lock, key.lock_id)
    assert lock is not None  # a foreign key
    if lock.retired_at is not None:
        raise LockRetiredError(f"lock {lock.id} is retired: key {key_uuid} cannot be pushed")
    if now.timestamp() >= key.not_after:
        raise PushNotRetryableError(f"key {key_uuid} has expired: issue a new key instead")
    if key.container_id is not None and key.container_id in held_container_ids(
        session, key.secure_element_id
    ):
        key.container_id = None
    key.push_state = next_state(state, PushEvent.RETRY_INSTALL)
    key.push_due_at = now
    key.push_attempts = 0
    key.push_error = None
    _record_retry(session, actor, key, now)
    session.commit()
    return key


def _record_retry(session: Session, actor: Actor, key: Key, now: dt.datetime) -> None:
    admin_audit.record(
        session,
        actor,
        Action.KEY_PUSH_RETRY,
        now=now,
        lock_id=key.lock_id,
        key_uuid=key.id,
        secure_element_id=key.secure_element_id,
        detail=str(key.push_state),
    )
