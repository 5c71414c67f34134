"""``/locks``: enrol, list, show, retire, push the revocation list; the lock's audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

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
from key_provisioner.schemas.common import problem_responses
from key_provisioner.schemas.locks import LockBundle, LockCreate, LockEnrolled, LockPage, LockPublic
from key_provisioner.services import audit, locks, revocations
from key_provisioner.services.locks import NewLock

router = APIRouter(prefix="/locks", tags=["locks"])
# OpenAPI links: where the new lock's id can be used next.
LOCK_LINKS = {
    name: {"operationId": op, "parameters": {"lock_id": "$response.body#/lock/id"}}
    for name, op in [
        ("ShowLock", "show_lock"),
        ("RetireLock", "retire_lock"),
        ("PushRevocations", "push_revocations"),
        ("LockAudit", "lock_audit"),
    ]
}
KeyIdQuery = Annotated[
    str | None, Query(pattern=r"^[0-9a-f]{12}$", description="Only rows about this key id.")
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=LockEnrolled,
    responses={**problem_responses(400, 403, 409, 422), 201: {"links": LOCK_LINKS}},
    summary="Enrol a lock",
    description=(
        "Makes the lock's secret and returns it **once**, inside `bundle`: save the bundle "
        "to a file and install it on the lock with `elock-lock init --bundle FILE`. "
        "The server keeps the secret sealed and never returns it again."
    ),
)
def enrol_lock(
    body: LockCreate, session: SessionDep, box: BoxDep, state: StateDep, actor: ActorDep
) -> LockEnrolled:
    enrolment = locks.enrol(session, box, NewLock(body.name, body.host, body.port), actor=actor)
    lock = enrolment.lock
    bundle = LockBundle(
        lock_id=lock.id,
        name=lock.name,
        secret=enrolment.secret.to_text(),
        host=lock.host,
        port=lock.port,
        sync_url=state.settings.sync.url,
        sync_ca=state.settings.sync.ca_pem,
    )
    return LockEnrolled(lock=presenters.lock_public(lock), bundle=bundle)


@router.get(
    "",
    response_model=LockPage,
    responses=problem_responses(422),
    summary="List locks, newest first",
)
def list_locks(
    session: SessionDep,
    _: ReaderDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
    include_retired: Annotated[bool, Query(description="Also list retired locks.")] = False,
) -> LockPage:
    page = locks.list_locks(session, include_retired=include_retired, cursor=cursor, limit=limit)
    return LockPage(
        items=[presenters.lock_public(lock) for lock in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{lock_id}",
    response_model=LockPublic,
    responses=problem_responses(404, 422),
    summary="Show a lock, with the revocation version it has confirmed",
)
def show_lock(lock_id: uuid.UUID, session: SessionDep, _: ReaderDep) -> LockPublic:
    return presenters.lock_public(locks.get(session, lock_id))


@router.post(
    "/{lock_id}/retire",
    response_model=LockPublic,
    responses=problem_responses(403, 404, 409, 422),
    summary="Retire a lock for good",
    description=(
        "Destroys the lock's secret. Its keys are revoked (`revoke_reason`: `lock retired`) "
        "and their containers deleted from their secure elements in the background (watch "
        "`push` on each key); the lock gets no more revocation pushes. Keys and audit history "
        "stay readable."
    ),
)
def retire_lock(
    lock_id: uuid.UUID, session: SessionDep, state: StateDep, actor: ActorDep
) -> LockPublic:
    lock = locks.retire(session, lock_id, actor=actor)
    state.kick_worker()  # its keys' containers are due for deletion
    return presenters.lock_public(lock)


@router.post(
    "/{lock_id}/revocations/push",
    response_model=LockPublic,
    responses=problem_responses(403, 404, 409, 422),
    summary="Push the lock's full revocation list now, without a revoke",
    description=(
        "Raises the lock's revocation `version` (so the lock takes the list whatever version "
        "it holds) and sends the list over the lock's connection (at once if it is connected, "
        "else when it dials in); `revocation` on the answer shows it pending, `in_sync` comes "
        "back once the lock confirms. For a lock whose state was lost or replaced. A retired "
        "lock answers 409."
    ),
)
def push_revocations(lock_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> LockPublic:
    lock = revocations.push_full_list(session, lock_id, actor=actor, now=utcnow())
    return presenters.lock_public(lock)


@router.get(
    "/{lock_id}/audit",
    response_model=AuditPage,
    responses=problem_responses(404, 422),
    summary="The lock's audit log as uploaded so far, newest first",
)
def lock_audit(
    lock_id: uuid.UUID,
    session: SessionDep,
    _: ReaderDep,
    key_id: KeyIdQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> AuditPage:
    locks.get(session, lock_id)
    page = audit.list_entries(session, lock_id=lock_id, key_id=key_id, cursor=cursor, limit=limit)
    return AuditPage(
        items=[presenters.audit_public(e) for e in page.items], next_cursor=page.next_cursor
    )
