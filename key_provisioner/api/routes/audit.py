"""``/audit``: every pulled audit row, filtered by lock and key id."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from key_provisioner.api import presenters
from key_provisioner.api.deps import CursorQuery, LimitQuery, ReaderDep, SessionDep
from key_provisioner.schemas.audit import AuditPage
from key_provisioner.schemas.common import problem_responses
from key_provisioner.services import audit

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get(
    "",
    response_model=AuditPage,
    responses=problem_responses(422),
    summary="Audit rows of all locks, newest first",
)
def list_audit(
    session: SessionDep,
    _: ReaderDep,
    lock_id: Annotated[uuid.UUID | None, Query(description="Only this lock's rows.")] = None,
    key_id: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{12}$", description="Only rows about this key id.")
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> AuditPage:
    page = audit.list_entries(session, lock_id=lock_id, key_id=key_id, cursor=cursor, limit=limit)
    return AuditPage(
        items=[presenters.audit_public(e) for e in page.items], next_cursor=page.next_cursor
    )
