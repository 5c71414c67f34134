"""``/keys``: issue, list, show, revoke, retry a failed push; a key's audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, status

from key_provisioner.api import presenters
from key_provisioner.api.deps import (
    ActorDep,
    BoxDep,
    CursorQuery,
    LimitQuery,
    ReaderDep,
    SessionDep,
    StateDep,
)
from key_provisioner.db.base import utcnow
from key_provisioner.schemas.audit import AuditPage
from key_provisioner.schemas.common import PRINTABLE, problem_responses
from key_provisioner.schemas.keys import (
    KeyCreate,
    KeyIssued,
    KeyPage,
    KeyPublic,
    KeyRevoke,
    KeyState,
)
from key_provisioner.services import audit, key_push, keys
from key_provisioner.services.keys import KeyFilter

router = APIRouter(prefix="/keys", tags=["keys"])
# OpenAPI links: where the new key's id can be used next.
KEY_LINKS = {
    name: {"operationId": op, "parameters": {"key_uuid": "$response.body#/id"}}
    for name, op in [
        ("ShowKey", "show_key"),
        ("RevokeKey", "revoke_key"),
        ("RetryKeyPush", "retry_key_push"),
        ("KeyAudit", "key_audit"),
    ]
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyIssued,
    responses={**problem_responses(400, 403, 409, 422), 201: {"links": KEY_LINKS}},
    summary="Issue a key for a lock and a secure element",
    description=(
        "Mints an identity and returns it with its PSK. The PSK is shown **once**: the server "
        "does not store it (it can re-derive it from the lock secret to provision the secure "
        "element). Use it by hand, e.g. `coap-client -m post -u IDENTITY -k PSK URI`. "
        "The background worker then installs its container in the secure element through "
        "its RACS server; `push` on the key shows how far that got."
    ),
)
def issue_key(
    body: KeyCreate, session: SessionDep, box: BoxDep, state: StateDep, actor: ActorDep
) -> KeyIssued:
    now = utcnow()
    key, minted, lock = keys.issue(
        session, box, presenters.new_key(body), actor=actor, now=now, push_note=state.push_note
    )
    state.kick_worker()  # its container is due for its secure element
    host = f"[{lock.host}]" if ":" in lock.host else lock.host
    return KeyIssued.model_validate(
        presenters.key_fields(key, now)
        | {"psk": minted.psk.decode("ascii"), "uri": f"coaps://{host}:{lock.port}/lock"}
    )


@router.get(
    "",
    response_model=KeyPage,
    responses=problem_responses(422),
    summary="List keys, newest first, with filters",
)
def list_keys(
    session: SessionDep,
    _: ReaderDep,
    lock_id: Annotated[uuid.UUID | None, Query(description="Only keys of this lock.")] = None,
    secure_element_id: Annotated[
        uuid.UUID | None, Query(description="Only keys for this secure element.")
    ] = None,
    state: Annotated[KeyState | None, Query(description="Only keys in this state now.")] = None,
    label: Annotated[
        str | None,
        Query(max_length=100, pattern=PRINTABLE, description="Only keys with exactly this label."),
    ] = None,
    key_id: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{12}$", description="Only keys with this key id.")
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> KeyPage:
    now = utcnow()
    flt = KeyFilter(lock_id, secure_element_id, state, label, key_id)
    page = keys.list_keys(session, flt, cursor=cursor, limit=limit, now=now)
    return KeyPage(
        items=[presenters.key_public(k, now) for k in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{key_uuid}",
    response_model=KeyPublic,
    responses=problem_responses(404, 422),
    summary="Show a key (never its PSK)",
)
def show_key(key_uuid: uuid.UUID, session: SessionDep, _: ReaderDep) -> KeyPublic:
    return presenters.key_public(keys.get(session, key_uuid), utcnow())


@router.post(
    "/{key_uuid}/revoke",
    response_model=KeyPublic,
    responses=problem_responses(400, 403, 404, 422),
    summary="Revoke a key and push the lock's new revocation list",
    description=(
        "Idempotent. The push runs in the background; watch `revocation` on the lock for "
        "the version it has confirmed. An offline lock gets the list when it is reachable."
    ),
)
def revoke_key(
    key_uuid: uuid.UUID,
    session: SessionDep,
    state: StateDep,
    actor: ActorDep,
    body: Annotated[KeyRevoke | None, Body()] = None,
) -> KeyPublic:
    key = keys.revoke(session, key_uuid, body.reason if body else "", actor=actor)
    state.kick_worker()
    return presenters.key_public(key, utcnow())


@router.post(
    "/{key_uuid}/push/retry",
    response_model=KeyPublic,
    responses=problem_responses(403, 404, 409, 422),
    summary="Retry a failed push of the key into its secure element",
    description=(
        "For a key whose `push.state` is `failed` (e.g. the card's certificate was refused, the "
        "card was full), once the cause is fixed: the push is `pending` again, due now, with "
        "`attempts` and `last_error` cleared, and the worker is woken. Any other push state, a "
        "revoked or expired key, or a retired lock answers 409 with why; a failed delete of a "
        "revoked key's container is tried again (`removing`)."
    ),
)
def retry_key_push(
    key_uuid: uuid.UUID, session: SessionDep, state: StateDep, actor: ActorDep
) -> KeyPublic:
    now = utcnow()
    key = key_push.retry(session, key_uuid, actor=actor, now=now)
    state.kick_worker()
    return presenters.key_public(key, now)


@router.get(
    "/{key_uuid}/audit",
    response_model=AuditPage,
    responses=problem_responses(404, 422),
    summary="What the key's lock recorded about this key, newest first",
)
def key_audit(
    key_uuid: uuid.UUID,
    session: SessionDep,
    _: ReaderDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> AuditPage:
    key = keys.get(session, key_uuid)
    page = audit.list_entries(
        session, lock_id=key.lock_id, key_id=key.key_id, cursor=cursor, limit=limit
    )
    return AuditPage(
        items=[presenters.audit_public(e) for e in page.items], next_cursor=page.next_cursor
    )
