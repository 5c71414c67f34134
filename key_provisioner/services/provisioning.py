"""Hooks for pushing key containers into secure elements (a later issue).

The server never stores a PSK. When the RACS push is built, it asks here for
the keys still to deliver with their PSKs re-derived from the lock secret,
and reports each delivery with ``key_pushed``. Nothing calls these yet.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from elock_common import MintedKey
from key_provisioner.core.crypto import SecretBox
from key_provisioner.db.base import utcnow
from key_provisioner.db.models import Key, Lock, SecureElement
from key_provisioner.services import keys, locks


@dataclass(frozen=True)
class KeyToPush:
    key: Key
    secure_element: SecureElement
    lock_uri: str
    container: MintedKey  # identity and re-derived PSK: keep in memory only


def keys_awaiting_push(
    session: Session, box: SecretBox, *, limit: int = 100, now: dt.datetime | None = None
) -> list[KeyToPush]:
    """Live keys of live locks that have not reached their secure element yet."""
    now = now or utcnow()
    rows = session.execute(
        select(Key, Lock, SecureElement)
        .join(Lock, Key.lock_id == Lock.id)
        .join(SecureElement, Key.secure_element_id == SecureElement.id)
        .where(
            Key.pushed_at.is_(None),
            Key.revoked_at.is_(None),
            Key.not_after > int(now.timestamp()),
            Lock.retired_at.is_(None),
        )
        .order_by(Key.issued_at)
        .limit(limit)
    ).all()
    out = []
    for key, lock, element in rows:
        identity = key.identity.encode("ascii")
        psk = locks.unseal(box, lock).derive_psk(identity)
        uri = f"coaps://{_host(lock.host)}:{lock.port}/lock"
        out.append(KeyToPush(key, element, uri, MintedKey(identity=identity, psk=psk)))
    return out


def key_pushed(session: Session, key_uuid: uuid.UUID, *, at: dt.datetime | None = None) -> Key:
    """Record that the container is in the secure element (idempotent)."""
    key = keys.get(session, key_uuid)
    if key.pushed_at is None:
        key.pushed_at = at or utcnow()
        session.commit()
    return key


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
