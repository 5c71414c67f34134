"""``/admin-audit``: which API token changed what, from where; for auditors and admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from key_provisioner.api.deps import CursorQuery, LimitQuery, ReaderDep, SessionDep
from key_provisioner.schemas.admin_audit import Action, AdminAuditEntryPublic, AdminAuditPage
from key_provisioner.schemas.common import problem_responses
from key_provisioner.services import admin_audit
from key_provisioner.services.admin_audit import AdminAuditFilter

router = APIRouter(prefix="/admin-audit", tags=["admin audit"])


@router.get(
    "",
    response_model=AdminAuditPage,
    responses=problem_responses(422),
    summary="Changes made through the API, newest first: which token, from where, what",
    description=(
        "One row per change (enrol, retire, push a lock's list, pull its audit, register a "
        "secure element, issue, revoke, retry a push), written in the same transaction as "
        "the change. A retirement adds one `key.revoke` row per key it revoked. Requests that "
        "change nothing (refused, or a revoke of a revoked key) leave no row."
    ),
)
def list_admin_audit(
    session: SessionDep,
    _: ReaderDep,
    token_id: Annotated[uuid.UUID | None, Query(description="Only this token's changes.")] = None,
    lock_id: Annotated[uuid.UUID | None, Query(description="Only changes to this lock.")] = None,
    key_uuid: Annotated[
        uuid.UUID | None, Query(description="Only changes to this key (its `id`).")
    ] = None,
    secure_element_id: Annotated[
        uuid.UUID | None, Query(description="Only changes to this secure element.")
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> AdminAuditPage:
    flt = AdminAuditFilter(token_id, lock_id, key_uuid, secure_element_id)
    page = admin_audit.list_entries(session, flt, cursor=cursor, limit=limit)
    return AdminAuditPage(
        items=[
            AdminAuditEntryPublic(
                id=change.entry.id,
                at=change.entry.at,
                token_id=change.entry.token_id,
                token_name=change.token_name,
                client=change.entry.client,
                action=Action(change.entry.action),
                lock_id=change.entry.lock_id,
                key_uuid=change.entry.key_uuid,
                secure_element_id=change.entry.secure_element_id,
                detail=change.entry.detail,
            )
            for change in page.items
        ],
        next_cursor=page.next_cursor,
    )
