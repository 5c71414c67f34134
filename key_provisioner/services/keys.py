"""Keys: issue (mint, store the identity, hand out the PSK once), list, show, revoke.

A revocation bumps the lock's revocation version and makes a push due in the
same transaction, with the lock's row locked first: the worker building a
push holds the same row lock, so it never sends a version without the keys
revoked under it.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from elock_common import IdentityFormatError, KeyIdentity, MintedKey, Rights, mint_key
from elock_common.identity import EVERY_DAY, MINUTES_PER_DAY, NO_NOT_AFTER
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import InvalidRequestError, LockRetiredError, NotFoundError
from key_provisioner.db.base import utcnow
from key_provisioner.db.models import Key, Lock, SecureElement
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.schemas.keys import KeyState, PushState
from key_provisioner.services import admin_audit, key_push, locks
from key_provisioner.services.admin_audit import Actor
from key_provisioner.services.pagination import Page, keyset, page_of

_MINT_ATTEMPTS = 4  # key ids are 48 random bits; a clash within one lock is rare


@dataclass(frozen=True)
class NewKey:
    lock_id: uuid.UUID
    secure_element_id: uuid.UUID
    label: str = ""
    rights: Rights = Rights.OPEN
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    weekdays: int = EVERY_DAY
    window_start: int = 0
    window_end: int = MINUTES_PER_DAY
    max_uses: int = 0


@dataclass(frozen=True)
class KeyFilter:
    lock_id: uuid.UUID | None = None
    secure_element_id: uuid.UUID | None = None
    state: KeyState | None = None
    label: str | None = None
    key_id: str | None = None


def issue(
    session: Session,
    box: SecretBox,
    new: NewKey,
    *,
    actor: Actor,
    now: dt.datetime | None = None,
    push_note: str | None = None,
) -> tuple[Key, MintedKey, Lock]:
    """Mint and store a key; its push into the secure element is due at once.

    ``push_note`` says why it will wait instead (pushing not configured).
    """
    now = now or utcnow()
    lock = _lock_to_issue_on(session, new)
    not_before = int(new.not_before.timestamp()) if new.not_before else 0
    not_after = math.ceil(new.not_after.timestamp()) if new.not_after else NO_NOT_AFTER
    if not_after <= now.timestamp():
        raise InvalidRequestError("not_after is in the past: the key would never work")
    secret = locks.unseal(box, lock)
    for _ in range(_MINT_ATTEMPTS):
        try:
            claims, minted = mint_key(
                secret,
                rights=new.rights,
                not_before=not_before,
                not_after=not_after,
                weekdays=new.weekdays,
                window_start=new.window_start,
                window_end=new.window_end,
                max_uses=new.max_uses,
            )
        except IdentityFormatError as exc:
            raise InvalidRequestError(f"cannot mint that key: {exc}") from None
        key = _key_row(lock, new, claims, minted, now=now, push_note=push_note)
        session.add(key)
        try:
            session.flush()
        except IntegrityError:  # the same key id twice on one lock: mint again
            session.rollback()
            # The rollback let the lock's row go: hold it again, so a retire (or a new
            # secret) that came in between is seen, as on the first try.
            lock = _lock_to_issue_on(session, new)
            secret = locks.unseal(box, lock)
            continue
        admin_audit.record(
            session,
            actor,
            Action.KEY_ISSUE,
            now=now,
            lock_id=lock.id,
            key_uuid=key.id,
            secure_element_id=key.secure_element_id,
            detail=f"key_id {key.key_id} {key.label}".rstrip(),
        )
        session.commit()
        return key, minted, lock
    raise InvalidRequestError("could not mint a unique key id; try again")


def _lock_to_issue_on(session: Session, new: NewKey) -> Lock:
    """The active lock the key opens, its row held; its secure element must exist too.

    ``FOR KEY SHARE`` (PostgreSQL; the lock the key's foreign key takes anyway, taken
    here before the lock is judged in service): a retire (``FOR UPDATE``) either has
    committed and this read sees it, or waits for this issue's commit and then revokes
    the new key with the others. Issues on one lock do not wait for each other.
    """
    lock = session.scalars(
        select(Lock)
        .where(Lock.id == new.lock_id)
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if lock is None:
        raise InvalidRequestError(f"no lock {new.lock_id}")
    if lock.retired_at is not None:
        raise LockRetiredError(f"lock {lock.id} was retired at {lock.retired_at.isoformat()}")
    if session.get(SecureElement, new.secure_element_id) is None:
        raise InvalidRequestError(f"no secure element {new.secure_element_id}")
    return lock


def _key_row(
    lock: Lock,
    new: NewKey,
    claims: KeyIdentity,
    minted: MintedKey,
    *,
    now: dt.datetime,
    push_note: str | None,
) -> Key:
    """The stored key: the claims as minted (not as asked), due for its push at once."""
    return Key(
        id=uuid.uuid4(),
        lock_id=lock.id,
        secure_element_id=new.secure_element_id,
        key_id=claims.key_id_hex,
        identity=minted.identity.decode("ascii"),
        label=new.label,
        rights=int(claims.rights),
        not_before=claims.not_before,
        not_after=claims.not_after,
        weekdays=claims.weekdays,
        window_start=claims.window_start,
        window_end=claims.window_end,
        max_uses=claims.max_uses,
        issued_at=now,
        push_state=PushState.PENDING,
        push_due_at=now,
        push_attempts=0,
        push_error=push_note,
    )


def get(session: Session, key_uuid: uuid.UUID) -> Key:
    key = session.get(Key, key_uuid)
    if key is None:
        raise NotFoundError(f"no key {key_uuid}")
    return key


def state(key: Key, now: dt.datetime) -> KeyState:
    if key.revoked_at is not None:
        return KeyState.REVOKED
    moment = now.timestamp()
    if moment >= key.not_after:
        return KeyState.EXPIRED
    if moment < key.not_before:
        return KeyState.PENDING
    return KeyState.ACTIVE


def _state_clause(wanted: KeyState, now: dt.datetime) -> ColumnElement[bool]:
    moment = int(now.timestamp())
    if wanted is KeyState.REVOKED:
        return Key.revoked_at.is_not(None)
    live = Key.revoked_at.is_(None)
    if wanted is KeyState.EXPIRED:
        return and_(live, Key.not_after <= moment)
    if wanted is KeyState.PENDING:
        return and_(live, Key.not_before > moment, Key.not_after > moment)
    return and_(live, Key.not_before <= moment, Key.not_after > moment)


def list_keys(
    session: Session,
    flt: KeyFilter,
    *,
    cursor: str | None,
    limit: int,
    now: dt.datetime | None = None,
) -> Page[Key]:
    query = select(Key)
    if flt.lock_id is not None:
        query = query.where(Key.lock_id == flt.lock_id)
    if flt.secure_element_id is not None:
        query = query.where(Key.secure_element_id == flt.secure_element_id)
    if flt.label is not None:
        query = query.where(Key.label == flt.label)
    if flt.key_id is not None:
        query = query.where(Key.key_id == flt.key_id)
    if flt.state is not None:
        query = query.where(_state_clause(flt.state, now or utcnow()))
    query = keyset(query, [Key.issued_at, Key.id], [dt.datetime, uuid.UUID], cursor, limit)
    return page_of(session.scalars(query).all(), limit, lambda k: (k.issued_at, k.id))


def revoke(
    session: Session,
    key_uuid: uuid.UUID,
    reason: str,
    *,
    actor: Actor,
    now: dt.datetime | None = None,
) -> Key:
    """Revoke a key (idempotent), make a push of the lock's new list due and
    the delete of its container from its secure element."""
    now = now or utcnow()
    key = get(session, key_uuid)
    lock = session.scalars(select(Lock).where(Lock.id == key.lock_id).with_for_update()).one()
    # Re-read under the row locks: a concurrent revoke may have won, a worker
    # may have given the key its container id.
    key = session.scalars(
        select(Key)
        .where(Key.id == key_uuid)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if key.revoked_at is not None:
        session.commit()
        return key
    key.revoked_at = now
    key.revoke_reason = reason
    key_push.on_revoke(key, now)
    admin_audit.record(
        session, actor, Action.KEY_REVOKE, now=now, lock_id=lock.id, key_uuid=key.id, detail=reason
    )
    if lock.retired_at is None:
        lock.revocation_version += 1
        lock.push_due_at = now
        lock.push_attempts = 0
    session.commit()
    return key


def revoked_key_ids(session: Session, lock_id: uuid.UUID, now: dt.datetime) -> list[str]:
    """The lock's full list: revoked keys that have not expired by themselves."""
    rows = session.scalars(
        select(Key.key_id)
        .where(
            Key.lock_id == lock_id,
            Key.revoked_at.is_not(None),
            Key.not_after > int(now.timestamp()),
        )
        .order_by(Key.key_id)
    )
    return list(rows)
