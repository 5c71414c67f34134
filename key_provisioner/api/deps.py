"""Dependencies, as ``Annotated`` aliases the routes declare.

Authentication happens once, in ``api.auth``'s middleware, before routing and
validation, so no request without a valid token learns anything (not even
whether its body was valid). The dependencies here read the caller it found
and add the role check; the ``HTTPBearer`` security scheme makes ``/docs``
offer the Authorize button and documents the scheme on every operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from key_provisioner.api.auth import client_address
from key_provisioner.api.state import AppState
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import UnauthenticatedError
from key_provisioner.services import tokens
from key_provisioner.services.admin_audit import Actor
from key_provisioner.services.pagination import MAX_LIMIT
from key_provisioner.services.tokens import Caller

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token from `elock-keyserver token create --role admin|auditor`.",
)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.elock
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


def get_box(state: StateDep) -> SecretBox:
    return state.box


def get_caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise UnauthenticatedError(tokens.REFUSED)
    return caller


def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    caller.require_admin()
    return caller


def get_actor(request: Request, caller: Annotated[Caller, Depends(get_admin)]) -> Actor:
    """The admin making a change, as the services record it (``services.admin_audit``)."""
    return Actor(caller.token_id, client_address(request))


SessionDep = Annotated[Session, Depends(get_session)]
BoxDep = Annotated[SecretBox, Depends(get_box)]
ReaderDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(get_admin)]
ActorDep = Annotated[Actor, Depends(get_actor)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page.",
    ),
]
