"""The locks' audit logs: claim due pulls, store pulled rows, query them.

Rows are stored idempotently by (lock, the lock's row id), and the lock's
cursor only moves past rows that were stored, so a pull that is cut off or
repeated loses nothing and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from elock_common import LockSecret
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import SecretUnavailableError
from key_provisioner.db.engine import is_postgresql
from key_provisioner.db.models import AuditEntry, Lock
from key_provisioner.services import locks
from key_provisioner.services.pagination import Page, keyset, page_of


@dataclass(frozen=True)
class AuditJob:
    lock_id: uuid.UUID
    host: str
    port: int
    secret: LockSecret
    since: int


@dataclass(frozen=True)
class LockAuditRow:
    """One row as the lock reports it (checked by ``lock_admin``)."""

    id: int
    ts: float
    key_id: str | None
    peer: str
    action: str
    outcome: str
    reason: str


def claim_due_pulls(
    session: Session, box: SecretBox, *, now: dt.datetime, lease: float, limit: int
) -> list[AuditJob]:
    query = (
        select(Lock)
        .where(Lock.retired_at.is_(None), Lock.audit_due_at.is_not(None))
        .where(Lock.audit_due_at <= now)
        .order_by(Lock.audit_due_at)
        .limit(limit)
    )
    if is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    jobs: list[AuditJob] = []
    for lock in session.scalars(query).all():
        lock.audit_due_at = now + dt.timedelta(seconds=lease)
        try:
            secret = locks.unseal(box, lock)
        except SecretUnavailableError:
            continue
        jobs.append(AuditJob(lock.id, lock.host, lock.port, secret, lock.audit_cursor))
    session.commit()
    return jobs


def store_rows(
    session: Session, lock_id: uuid.UUID, rows: Sequence[LockAuditRow], *, now: dt.datetime
) -> int:
    """Store rows newer than the lock's cursor; returns how many were new."""
    lock = session.scalars(
        select(Lock)
        .where(Lock.id == lock_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    lock.last_seen_at = now
    fresh = sorted((r for r in rows if r.id > lock.audit_cursor), key=lambda r: r.id)
    for row in fresh:
        session.add(
            AuditEntry(
                lock_id=lock_id,
                lock_entry_id=row.id,
                at=dt.datetime.fromtimestamp(row.ts, dt.UTC),
                key_id=row.key_id,
                peer=row.peer[:100],
                action=row.action[:64],
                outcome=row.outcome,
                reason=row.reason[:300],
            )
        )
    if fresh:
        lock.audit_cursor = fresh[-1].id
    session.commit()
    return len(fresh)


def pull_done(session: Session, lock_id: uuid.UUID, *, next_at: dt.datetime) -> None:
    lock = session.get(Lock, lock_id)
    if lock is not None and lock.retired_at is None:
        lock.audit_due_at = next_at
        session.commit()


def request_pull(session: Session, lock_id: uuid.UUID, *, now: dt.datetime) -> Lock:
    lock = locks.get_active(session, lock_id, for_update=True)
    lock.audit_due_at = now
    session.commit()
    return lock


def list_entries(
    session: Session,
    *,
    lock_id: uuid.UUID | None,
    key_id: str | None,
    cursor: str | None,
    limit: int,
) -> Page[AuditEntry]:
    query = select(AuditEntry)
    if lock_id is not None:
        query = query.where(AuditEntry.lock_id == lock_id)
    if key_id is not None:
        query = query.where(AuditEntry.key_id == key_id)
    query = keyset(query, [AuditEntry.id], [int], cursor, limit)
    return page_of(session.scalars(query).all(), limit, lambda e: (e.id,))
