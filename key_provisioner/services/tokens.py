"""API tokens: create (shown once, optionally expiring), authenticate, list, revoke.

A token that is unknown, revoked or expired gets the same refusal, so a caller
cannot learn whether a token it holds ever existed; the server's log names the
token id (never the token) when a known token is refused, for its operator.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from key_provisioner.core.crypto import TOKEN_PREFIX, hash_api_token, new_api_token
from key_provisioner.core.errors import (
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    UnauthenticatedError,
)
from key_provisioner.db.base import utcnow
from key_provisioner.db.models import ApiToken

log = logging.getLogger(__name__)

REFUSED = (
    "the API token is missing, unknown, revoked or expired;"
    " send a valid one as `Authorization: Bearer <token>`"
)
# ``last_used_at`` moves at most this often: a write per request would serialize
# every read on SQLite, and "last used" needs no finer grain.
LAST_USE_GRAIN = dt.timedelta(seconds=60)
MAX_CLIENT = 100


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


def create(
    session: Session,
    role: Role,
    name: str,
    *,
    expires_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its row; ``expires_at`` None means it works until revoked."""
    now = now or utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidRequestError(
            f"the expiry {expires_at.isoformat()} is not in the future: the token would never work"
        )
    token, digest = new_api_token()
    row = ApiToken(
        id=uuid.uuid4(),
        name=name,
        role=role.value,
        token_hash=digest,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.commit()
    return row, token


def authenticate(
    session: Session,
    token: str | None,
    *,
    client: str | None = None,
    now: dt.datetime | None = None,
) -> Caller:
    """Find a live token by its hash; any failure is the same 401. Notes its last use."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise UnauthenticatedError(REFUSED)
    now = now or utcnow()
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_api_token(token))
    ).one_or_none()
    if row is None:
        raise UnauthenticatedError(REFUSED)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        why = "revoked" if row.revoked_at is not None else "expired"
        log.info("refused API token %s (%s): %s", row.id, row.name, why)
        raise UnauthenticatedError(REFUSED)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_GRAIN:
        row.last_used_at = now
        row.last_used_from = (client or "")[:MAX_CLIENT] or None
        session.commit()
    return Caller(row.id, row.name, Role(row.role))


def state(row: ApiToken, now: dt.datetime) -> str:
    """``active``, ``revoked`` or ``expired``, as ``token list`` shows it."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


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
