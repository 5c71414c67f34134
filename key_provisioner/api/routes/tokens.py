"""``/tokens/me``: which token is calling, so a client can show what it may do."""

from __future__ import annotations

from fastapi import APIRouter

from key_provisioner.api.deps import ReaderDep
from key_provisioner.schemas.common import problem_responses
from key_provisioner.schemas.tokens import CallerPublic

router = APIRouter(prefix="/tokens", tags=["admin audit"])


@router.get(
    "/me",
    response_model=CallerPublic,
    responses=problem_responses(),
    summary="The calling token's id, name and role",
)
def show_caller(caller: ReaderDep) -> CallerPublic:
    return CallerPublic(token_id=caller.token_id, name=caller.name, role=str(caller.role))
