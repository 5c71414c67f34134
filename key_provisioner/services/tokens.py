"""API tokens: create (shown once), authenticate, list, revoke."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from key_provisioner.core.crypto import TOKEN_PREFIX, hash_api_token, new_api_token
from key_provisioner.core.errors import ForbiddenError, NotFoundError, UnauthenticatedError
from key_provisioner.db.base import utcnow
from key_provisioner.db.models import ApiToken


class Role(enum.StrEnum):
    ADMIN = "admin"  # reads and changes everything
    AUDITOR = "auditor"  # reads everything, changes nothing


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the API needs to know."""

    token_id: uuid.UUID
    name: str
    role: Role

    def require_admin(self) -> None:
        if self.role is not Role.ADMIN:
            raise ForbiddenError(f"token {self.name!r} has the {self.role} role; this needs admin")


def create(session: Session, role: Role, name: str) -> tuple[ApiToken, str]:
    token, digest = new_api_token()
    row = ApiToken(
        id=uuid.uuid4(), name=name, role=role.value, token_hash=digest, created_at=utcnow()
    )
    session.add(row)
    session.commit()
    return row, token


def authenticate(session: Session, token: str | None) -> Caller:
    """Find a live token by its hash; any failure is the same 401."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise UnauthenticatedError("send a valid API token as `Authorization: Bearer <token>`")
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_api_token(token))
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        raise UnauthenticatedError("send a valid API token as `Authorization: Bearer <token>`")
    return Caller(row.id, row.name, Role(row.role))


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at)))


def revoke(session: Session, token_id: uuid.UUID, *, now: dt.datetime | None = None) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFoundError(f"no API token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.commit()
    return row
