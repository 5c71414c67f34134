"""``/secure-elements``: register, list, show."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from key_provisioner.api import presenters
from key_provisioner.api.deps import ActorDep, CursorQuery, LimitQuery, ReaderDep, SessionDep
from key_provisioner.schemas.common import problem_responses
from key_provisioner.schemas.secure_elements import (
    SecureElementCreate,
    SecureElementPage,
    SecureElementPublic,
)
from key_provisioner.services import secure_elements
from key_provisioner.services.secure_elements import NewSecureElement

router = APIRouter(prefix="/secure-elements", tags=["secure elements"])
# OpenAPI links: where the new secure element's id can be used next.
SE_LINKS = {
    "ShowSecureElement": {
        "operationId": "show_secure_element",
        "parameters": {"element_id": "$response.body#/id"},
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SecureElementPublic,
    responses={**problem_responses(400, 403, 409, 422), 201: {"links": SE_LINKS}},
    summary="Register a secure element: behind a RACS server, or reached through its host",
)
def register_secure_element(
    body: SecureElementCreate, session: SessionDep, actor: ActorDep
) -> SecureElementPublic:
    element = secure_elements.register(
        session,
        NewSecureElement(
            seid=body.seid,
            racs_server=body.racs_server,
            label=body.label,
            certificate_pem=body.certificate_pem,
        ),
        actor=actor,
    )
    return presenters.secure_element_public(element)


@router.get(
    "",
    response_model=SecureElementPage,
    responses=problem_responses(422),
    summary="List secure elements, newest first",
)
def list_secure_elements(
    session: SessionDep, _: ReaderDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> SecureElementPage:
    page = secure_elements.list_elements(session, cursor=cursor, limit=limit)
    return SecureElementPage(
        items=[presenters.secure_element_public(e) for e in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{element_id}",
    response_model=SecureElementPublic,
    responses=problem_responses(404, 422),
    summary="Show a secure element",
)
def show_secure_element(
    element_id: uuid.UUID, session: SessionDep, _: ReaderDep
) -> SecureElementPublic:
    return presenters.secure_element_public(secure_elements.get(session, element_id))
