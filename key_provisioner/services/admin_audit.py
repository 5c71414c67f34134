"""Who changed what: one row per change an API token made, in the change's own transaction.

Every service that changes something takes an ``Actor`` (the token id, never the
token, and the request's client address) and calls ``record`` before its commit, so
the row exists exactly when the change does: a change rolled back (a name clash, a
race lost) leaves no row, and no change is committed without one. Requests that
change nothing (a refused one, a revoke of a key already revoked) leave none either.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from key_provisioner.db.base import utcnow
from key_provisioner.db.models import AdminAuditEntry, ApiToken
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.services.pagination import Page, keyset, page_of

MAX_DETAIL = 300
MAX_CLIENT = 100


@dataclass(frozen=True)
class Actor:
    """Who asks for a change: an admin token's id and the client address it came from."""

    token_id: uuid.UUID
    client: str


@dataclass(frozen=True)
class AdminAuditFilter:
    token_id: uuid.UUID | None = None
    lock_id: uuid.UUID | None = None
    key_uuid: uuid.UUID | None = None
    secure_element_id: uuid.UUID | None = None


def record(
    session: Session,
    actor: Actor,
    action: Action,
    *,
    now: dt.datetime | None = None,
    lock_id: uuid.UUID | None = None,
    key_uuid: uuid.UUID | None = None,
    secure_element_id: uuid.UUID | None = None,
    detail: str = "",
) -> AdminAuditEntry:
    """Add the row to the caller's transaction; the caller's commit makes both durable.

    The change is flushed first, so the rows the entry names exist (foreign keys).
    Callers that turn an ``IntegrityError`` into a conflict flush their change before
    calling this, so a failing audit row never passes for a conflict of theirs.
    """
    session.flush()
    entry = AdminAuditEntry(
        at=now or utcnow(),
        token_id=actor.token_id,
        client=actor.client[:MAX_CLIENT],
        action=action.value,
        lock_id=lock_id,
        key_uuid=key_uuid,
        secure_element_id=secure_element_id,
        detail=detail[:MAX_DETAIL],
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class Change:
    """A row with the name its token had (names help people; the id is what counts)."""

    entry: AdminAuditEntry
    token_name: str


def list_entries(
    session: Session, flt: AdminAuditFilter, *, cursor: str | None, limit: int
) -> Page[Change]:
    """Newest first; each filter is served by an index ending in ``id``."""
    query = select(AdminAuditEntry)
    if flt.token_id is not None:
        query = query.where(AdminAuditEntry.token_id == flt.token_id)
    if flt.lock_id is not None:
        query = query.where(AdminAuditEntry.lock_id == flt.lock_id)
    if flt.key_uuid is not None:
        query = query.where(AdminAuditEntry.key_uuid == flt.key_uuid)
    if flt.secure_element_id is not None:
        query = query.where(AdminAuditEntry.secure_element_id == flt.secure_element_id)
    query = keyset(query, [AdminAuditEntry.id], [int], cursor, limit)
    page = page_of(session.scalars(query).all(), limit, lambda e: (e.id,))
    token_ids = {entry.token_id for entry in page.items}
    names = {
        token_id: name
        for token_id, name in session.execute(
            select(ApiToken.id, ApiToken.name).where(ApiToken.id.in_(token_ids))
        )
    }
    return Page([Change(e, names.get(e.token_id, "")) for e in page.items], page.next_cursor)
