"""The locks' audit logs: store the rows locks upload, query them.

Rows are stored idempotently by (lock, the lock's row id, generation), and the
lock's cursor only moves past rows that were stored, so an upload that is cut
off or repeated loses nothing and duplicates nothing.

A lock's row ids start again when its state is lost or replaced (a new SD card,
a restored backup). Its log then has a new random id, which the lock says in
its hello (``services.lock_sync.connect``): the log is read again from the
start as a new generation. Rows that came back with a restored backup, the same
as rows already stored, are not stored twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from key_provisioner.db.models import AuditEntry, Lock
from key_provisioner.services.pagination import Page, keyset, page_of

_SAME_TIME = 0.001  # seconds: more than any rounding of a stored time


@dataclass(frozen=True)
class LockAuditRow:
    """One row as the lock reports it (checked by ``elock_common.lock_sync``)."""

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
