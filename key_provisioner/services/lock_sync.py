"""The locks' own connections: who holds a lock, what it holds, what it uploaded.

Each function is one short transaction under the lock's row lock (``FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so two connections
claiming one lock, or two key-server processes, never interleave. A
connection carries a random token; once another connection took the lock over
(or the lock was retired), every call of the old one is refused.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from elock_common.lock_sync import AuditRow, Hello
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import KeyServerError, SecretUnavailableError
from key_provisioner.db.models import Lock
from key_provisioner.observability import metrics
from key_provisioner.services import audit, keys, locks, revocations
from key_provisioner.services.audit import LockAuditRow

_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class SyncRefusedError(KeyServerError):
    """Why a lock's connection is refused or ended; the lock is told this reason
    (the WebSocket's close frame, not problem+json: no HTTP request to answer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ListToSend:
    version: int
    revoked: tuple[str, ...]


@dataclass(frozen=True)
class Connected:
    audit_cursor: int
    version: int
    send: ListToSend | None  # the lock does not hold the server's list


def sync_key(session: Session, box: SecretBox, lock_id: str) -> bytes:
    """The lock's sync key, or a refusal that says why there is none."""
    lock = session.get(Lock, uuid.UUID(lock_id))
    if lock is None:
        raise SyncRefusedError(f"no lock {lock_id} is enrolled here")
    if lock.retired_at is not None:
        raise SyncRefusedError(f"lock {lock_id} was retired; enrol it again")
    try:
        return locks.unseal(box, lock).derive_sync_key()
    except SecretUnavailableError as exc:
        raise SyncRefusedError(
            f"lock {lock_id}: the server cannot use its secret ({exc.detail})"
        ) from None


def connect(
    session: Session, hello: Hello, token: str, *, now: dt.datetime, idle_timeout: float
) -> Connected:
    """An authenticated lock: refuse it if another live connection holds it, else take it."""
    lock = _locked(session, hello.lock_id)
    if lock.retired_at is not None:
        session.rollback()
        raise SyncRefusedError(f"lock {hello.lock_id} was retired; enrol it again")
    if lock.sync_session is not None and _alive(lock, now, idle_timeout):
        session.rollback()
        raise SyncRefusedError(
            f"lock {hello.lock_id} is already connected (a second lock with this id?);"
            f" try again after {idle_timeout:g} s of silence from the first"
        )
    lock.sync_session, lock.sync_connected_at, lock.last_seen_at = token, now, now
    lock.clock_offset = round(hello.lock_time - now.timestamp(), 3)
    lock.max_clock_skew = hello.max_clock_skew
    if lock.audit_log_id != hello.audit_log:
        if lock.audit_log_id is not None:
            # The lock's state was lost or replaced: its rows are a new generation,
            # and it may hold an older list, so it gets the whole list again.
            lock.audit_generation += 1
            lock.audit_cursor = 0
            revocations.schedule_full_push(lock, now)
        lock.audit_log_id = hello.audit_log
    send = _held(session, lock, hello.revocation_version, now)
    connected = Connected(lock.audit_cursor, lock.revocation_version, send)
    session.commit()
    return connected


def held(
    session: Session, lock_id: str, token: str, version: int, *, now: dt.datetime
) -> ListToSend | None:
    """The lock confirmed it holds ``version``; answer the list again if that is not ours."""
    lock = _ours(session, lock_id, token)
    send = _held(session, lock, version, now)
    session.commit()
    return send


def current(session: Session, lock_id: str, token: str, *, now: dt.datetime) -> ListToSend | None:
    """Woken by a change: the list to send, unless the lock confirmed it already."""
    lock = _ours(session, lock_id, token)
    send = None
    if lock.confirmed_version != lock.revocation_version:
        send = ListToSend(lock.revocation_version, _revoked(session, lock, now))
    session.commit()
    return send


def store_audit(
    session: Session, lock_id: str, token: str, rows: Sequence[AuditRow], *, now: dt.datetime
) -> int:
    """Store uploaded rows once each; answer the cursor (every row up to it is stored)."""
    lock = _ours(session, lock_id, token)
    stored = audit.store_uploaded(session, lock, [_storable(row) for row in rows])
    lock.last_seen_at = now
    cursor = lock.audit_cursor
    session.commit()
    metrics.audit_rows_ingested(stored)
    return cursor


def _storable(row: AuditRow) -> LockAuditRow:
    """A row as stored: in its text, control characters (NUL among them, which
    PostgreSQL's ``text`` refuses) and lone surrogates (valid JSON, not UTF-8) become
    U+FFFD. A row the database refuses would end the lock's connection at each upload
    of it, for good."""
    text = (row.peer, row.action, row.reason)
    peer, action, reason = (_UNSTORABLE.sub("\ufffd", field) for field in text)
    return LockAuditRow(row.id, row.ts, row.key_id, peer, action, row.outcome, reason)


def seen(
    session: Session, lock_id: str, token: str, offset: float | None, *, now: dt.datetime
) -> None:
    """A ping: the lock is alive; ``offset`` is the server's clock minus the lock's."""
    lock = _ours(session, lock_id, token)
    lock.last_seen_at = now
    if offset is not None:
        lock.clock_offset = round(-offset, 3)
    session.commit()


def disconnected(session: Session, lock_id: str, token: str, *, now: dt.datetime) -> None:
    lock = _locked(session, lock_id)
    if lock.sync_session == token:
        lock.sync_session, lock.sync_connected_at = None, None
    session.commit()


def _held(session: Session, lock: Lock, version: int, now: dt.datetime) -> ListToSend | None:
    """As ``revocations.record_ack``: a lock above our version gets our list numbered
    above its own (the server's list is the one that counts)."""
    if version != lock.confirmed_version:
        lock.confirmed_version, lock.confirmed_at = version, now
    if version > lock.revocation_version:
        lock.revocation_version = version + 1
    if version == lock.revocation_version:
        lock.push_due_at, lock.push_attempts, lock.push_error = None, 0, None
        return None
    return ListToSend(lock.revocation_version, _revoked(session, lock, now))


def _revoked(session: Session, lock: Lock, now: dt.datetime) -> tuple[str, ...]:
    return tuple(keys.revoked_key_ids(session, lock.id, now))


def _alive(lock: Lock, now: dt.datetime, idle_timeout: float) -> bool:
    seen_at = lock.last_seen_at
    return seen_at is not None and (now - seen_at).total_seconds() < idle_timeout


def _ours(session: Session, lock_id: str, token: str) -> Lock:
    lock = _locked(session, lock_id)
    if lock.sync_session != token:
        session.rollback()
        why = "was retired" if lock.retired_at is not None else "is held by another connection"
        raise SyncRefusedError(f"lock {lock_id} {why}")
    return lock


def _locked(session: Session, lock_id: str) -> Lock:
    lock = session.scalars(
        select(Lock)
        .where(Lock.id == uuid.UUID(lock_id))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if lock is None:
        session.rollback()
        raise SyncRefusedError(f"no lock {lock_id} is enrolled here")
    return lock
