"""Locks: enrol (make and seal the secret), list, show, retire (and revoke its keys)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from elock_common import LockSecret
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import ConflictError, LockRetiredError, NotFoundError
from key_provisioner.db.base import utcnow
from key_provisioner.db.models import Key, Lock
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.services import admin_audit, key_push
from key_provisioner.services.admin_audit import Actor
from key_provisioner.services.pagination import Page, keyset, page_of

RETIRED_REASON = "lock retired"


@dataclass(frozen=True)
class NewLock:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class Enrolment:
    lock: Lock
    secret: LockSecret  # for the one-time bundle; the caller must not keep it


def enrol(
    session: Session,
    box: SecretBox,
    new: NewLock,
    *,
    actor: Actor,
    now: dt.datetime | None = None,
) -> Enrolment:
    """Make the lock's secret, seal it, and store the lock (and who enrolled it)."""
    now = now or utcnow()
    secret = LockSecret.generate()
    lock = Lock(
        id=uuid.uuid4(),
        name=new.name,
        host=new.host,
        port=new.port,
        lock_tag=secret.lock_tag.hex(),
        enrolled_at=now,
        revocation_version=0,
        confirmed_version=0,
        push_attempts=0,
        audit_cursor=0,
        audit_generation=0,
        audit_due_at=now,
    )
    lock.secret_sealed = box.seal(secret, lock.id)
    session.add(lock)
    try:
        session.flush()  # the name check; nothing else here may pass for a clash
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"a lock named {new.name!r} is already in service") from None
    admin_audit.record(session, actor, Action.LOCK_ENROL, now=now, lock_id=lock.id, detail=new.name)
    session.commit()
    return Enrolment(lock, secret)


def get(session: Session, lock_id: uuid.UUID) -> Lock:
    lock = session.get(Lock, lock_id)
    if lock is None:
        raise NotFoundError(f"no lock {lock_id}")
    return lock


def get_active(session: Session, lock_id: uuid.UUID, *, for_update: bool = False) -> Lock:
    """The lock, refusing a retired one; ``for_update`` locks its row (PostgreSQL)."""
    if for_update:
        lock = session.scalars(
            select(Lock).where(Lock.id == lock_id).with_for_update()
        ).one_or_none()
    else:
        lock = session.get(Lock, lock_id)
    if lock is None:
        raise NotFoundError(f"no lock {lock_id}")
    if lock.retired_at is not None:
        raise LockRetiredError(f"lock {lock_id} was retired at {lock.retired_at.isoformat()}")
    return lock


def list_locks(
    session: Session, *, include_retired: bool, cursor: str | None, limit: int
) -> Page[Lock]:
    query = select(Lock)
    if not include_retired:
        query = query.where(Lock.retired_at.is_(None))
    query = keyset(query, [Lock.enrolled_at, Lock.id], [dt.datetime, uuid.UUID], cursor, limit)
    rows = session.scalars(query).all()
    return page_of(rows, limit, lambda lock: (lock.enrolled_at, lock.id))


def retire(
    session: Session, lock_id: uuid.UUID, *, actor: Actor, now: dt.datetime | None = None
) -> Lock:
    """Take a lock out of service for good: its secret is destroyed, its keys revoked.

    Its keys can open nothing any more, so each one not revoked yet is revoked
    (reason ``RETIRED_REASON``) and, as a revoke does, its container is to be
    deleted from its card (``key_push.on_revoke``: ``removing``, or ``removed``
    if it was never written). The revocation version does not move: a retired
    lock gets no more revocation pushes, nor audit pulls. Its name is free
    again; history stays.
    """
    now = now or utcnow()
    lock = get_active(session, lock_id, for_update=True)
    lock.retired_at = now
    lock.secret_sealed = None
    lock.push_due_at = None
    lock.audit_due_at = None
    admin_audit.record(session, actor, Action.LOCK_RETIRE, now=now, lock_id=lock.id)
    lock.sync_session = None  # its connection, if any, is refused from now on
    live_keys = (
        select(Key)
        .where(Key.lock_id == lock.id, Key.revoked_at.is_(None))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for key in session.scalars(live_keys).all():
        key.revoked_at = now
        key.revoke_reason = RETIRED_REASON
        key_push.on_revoke(key, now)
        admin_audit.record(
            session,
            actor,
            Action.KEY_REVOKE,
            now=now,
            lock_id=lock.id,
            key_uuid=key.id,
            detail=RETIRED_REASON,
        )
    session.commit()
    return lock


def unseal(box: SecretBox, lock: Lock) -> LockSecret:
    if lock.secret_sealed is None:
        raise LockRetiredError(f"lock {lock.id} is retired; its secret is gone")
    return box.open(lock.secret_sealed, lock.id)
