"""The locks' audit logs: claim due pulls, store pulled rows, query them.

Rows are stored idempotently by (lock, the lock's row id, generation), and the
lock's cursor only moves past rows that were stored, so a pull that is cut off
or repeated loses nothing and duplicates nothing.

A lock's row ids start again when its state is lost or replaced (a new SD card,
a restored backup). The pull checks that the lock still has the row at the
cursor, as stored (``lock_admin.AdminSession.read_audit``); when it does not,
the lock's log is read again from the start as a new generation. Rows that came
back with a restored backup, the same as rows already stored, are not stored
twice.
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
from key_provisioner.services import locks, revocations
from key_provisioner.services.pagination import Page, keyset, page_of

_SAME_TIME = 0.001  # seconds: more than any rounding of a stored time


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

    def clipped(self) -> tuple[str | None, str, str, str, str]:
        """The text fields as stored (cut to their columns)."""
        return self.key_id, self.peer[:100], self.action[:64], self.outcome, self.reason[:300]


@dataclass(frozen=True)
class AuditJob:
    lock_id: uuid.UUID
    host: str
    port: int
    secret: LockSecret
    since: int  # the cursor: the last row id stored
    generation: int
    anchor: LockAuditRow | None  # the row stored at the cursor, to recognise it on the lock


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
        anchor = _stored(session, lock.id, lock.audit_cursor) if lock.audit_cursor else None
        jobs.append(
            AuditJob(
                lock.id,
                lock.host,
                lock.port,
                secret,
                lock.audit_cursor,
                lock.audit_generation,
                None if anchor is None else _as_row(anchor),
            )
        )
    session.commit()
    return jobs


def _stored(session: Session, lock_id: uuid.UUID, entry_id: int) -> AuditEntry | None:
    """The row stored for the lock's row ``entry_id``, of the newest generation that has
    one (a row that came back with a restored backup stays in its older generation)."""
    return session.scalars(
        select(AuditEntry)
        .where(AuditEntry.lock_id == lock_id, AuditEntry.lock_entry_id == entry_id)
        .order_by(AuditEntry.audit_generation.desc())
        .limit(1)
    ).first()


def _as_row(entry: AuditEntry) -> LockAuditRow:
    return LockAuditRow(
        entry.lock_entry_id,
        entry.at.timestamp(),
        entry.key_id,
        entry.peer,
        entry.action,
        entry.outcome,
        entry.reason,
    )


def same_row(stored: LockAuditRow, row: LockAuditRow) -> bool:
    """Is ``row``, as the lock reports it now, the one stored as ``stored``?"""
    return (
        stored.id == row.id
        and abs(stored.ts - row.ts) <= _SAME_TIME
        and stored.clipped() == row.clipped()
    )


def _entry(lock_id: uuid.UUID, row: LockAuditRow, generation: int) -> AuditEntry:
    key_id, peer, action, outcome, reason = row.clipped()
    return AuditEntry(
        lock_id=lock_id,
        lock_entry_id=row.id,
        audit_generation=generation,
        at=dt.datetime.fromtimestamp(row.ts, dt.UTC),
        key_id=key_id,
        peer=peer,
        action=action,
        outcome=outcome,
        reason=reason,
    )


@dataclass(frozen=True)
class Stored:
    rows: int  # rows stored
    generation: int  # the lock's log generation now
    restarted: bool  # this pull started a new generation


def store_rows(
    session: Session,
    job: AuditJob,
    rows: Sequence[LockAuditRow],
    *,
    restarted: bool,
    now: dt.datetime,
) -> Stored:
    """Store rows newer than the lock's cursor.

    ``restarted``: the lock's log is not the one pulled so far and ``rows`` are read
    from its start. The lock gets a new generation with its cursor at 0, and its
    full revocation list is pushed again (its state was lost or replaced, so it may
    hold an older list). A job that another visit overtook stores nothing.
    """
    lock = session.scalars(
        select(Lock)
        .where(Lock.id == job.lock_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    lock.last_seen_at = now
    if lock.audit_generation != job.generation:
        session.commit()
        return Stored(0, lock.audit_generation, False)
    if restarted:
        lock.audit_generation += 1
        lock.audit_cursor = 0
        if lock.retired_at is None:
            revocations.schedule_full_push(lock, now)
    fresh = sorted((r for r in rows if r.id > lock.audit_cursor), key=lambda r: r.id)
    earlier = _earlier_generations(session, lock, fresh)
    stored = 0
    for row in fresh:
        if any(same_row(_as_row(entry), row) for entry in earlier.get(row.id, ())):
            continue  # it came back with a restored backup of the lock's state
        session.add(_entry(lock.id, row, lock.audit_generation))
        stored += 1
    if fresh:
        lock.audit_cursor = fresh[-1].id
    session.commit()
    return Stored(stored, lock.audit_generation, restarted)


def _earlier_generations(
    session: Session, lock: Lock, rows: Sequence[LockAuditRow]
) -> dict[int, list[AuditEntry]]:
    """Rows of the lock's earlier generations with the same row ids as ``rows``."""
    if lock.audit_generation == 0 or not rows:
        return {}
    found: dict[int, list[AuditEntry]] = {}
    for entry in session.scalars(
        select(AuditEntry).where(
            AuditEntry.lock_id == lock.id,
            AuditEntry.audit_generation < lock.audit_generation,
            AuditEntry.lock_entry_id.between(rows[0].id, rows[-1].id),
        )
    ):
        found.setdefault(entry.lock_entry_id, []).append(entry)
    return found


def store_uploaded(session: Session, lock: Lock, rows: Sequence[LockAuditRow]) -> int:
    """Rows the lock uploaded over its own connection, under its row lock: each stored
    once (rows at or below the cursor were stored before), the cursor moved past them.
    Returns how many were new."""
    fresh = sorted((r for r in rows if r.id > lock.audit_cursor), key=lambda r: r.id)
    earlier = _earlier_generations(session, lock, fresh)
    stored = 0
    for row in fresh:
        if any(same_row(_as_row(entry), row) for entry in earlier.get(row.id, ())):
            continue  # it came back with a restored backup of the lock's state
        session.add(_entry(lock.id, row, lock.audit_generation))
        stored += 1
    if fresh:
        lock.audit_cursor = fresh[-1].id
    return stored


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
