"""Revocation delivery: claim due pushes, record the lock's acknowledgement.

Claiming is a short transaction: select locks whose push is due, ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL (so replicas never claim the same lock),
move ``push_due_at`` forward by a lease, build the payload, commit. The
CoAP exchange then runs outside any transaction. A worker that dies mid-push
loses nothing: the lease runs out and the push is due again.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from elock_common import LockSecret
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import SecretUnavailableError
from key_provisioner.db.engine import is_postgresql
from key_provisioner.db.models import Lock
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.services import admin_audit, keys, locks
from key_provisioner.services.admin_audit import Actor

MAX_ERROR = 300


@dataclass(frozen=True)
class PushJob:
    lock_id: uuid.UUID
    host: str
    port: int
    secret: LockSecret
    version: int
    revoked: list[str]


def claim_due_pushes(
    session: Session, box: SecretBox, *, now: dt.datetime, lease: float, limit: int
) -> list[PushJob]:
    query = (
        select(Lock)
        .where(
            Lock.retired_at.is_(None),
            Lock.push_due_at.is_not(None),
            Lock.push_due_at <= now,
            Lock.revocation_version != Lock.confirmed_version,
        )
        .order_by(Lock.push_due_at)
        .limit(limit)
    )
    if is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    jobs: list[PushJob] = []
    for lock in session.scalars(query).all():
        lock.push_due_at = now + dt.timedelta(seconds=lease)
        try:
            secret = locks.unseal(box, lock)
        except SecretUnavailableError as exc:
            lock.push_error = exc.detail[:MAX_ERROR]
            continue
        revoked = keys.revoked_key_ids(session, lock.id, now)
        jobs.append(
            PushJob(lock.id, lock.host, lock.port, secret, lock.revocation_version, revoked)
        )
    session.commit()
    return jobs


@dataclass(frozen=True)
class Ack:
    version: int  # the server's version of the list now
    renumbered: bool  # the lock held a version above the server's; the list goes again


def record_ack(session: Session, lock_id: uuid.UUID, held: int, *, now: dt.datetime) -> Ack:
    """The lock answered: it now holds version ``held``.

    The key server's list is the one that counts. A lock holding a version above
    the server's (it kept its state from an earlier enrolment, or the server's
    database went back to a backup) would ignore every list not above its own, so
    the server numbers its list above the lock's and pushes it again at once; the
    lock then holds the server's list, which replaces its own. The lock is in sync
    only when it holds exactly the server's version.
    """
    lock = _locked(session, lock_id)
    lock.last_seen_at = now
    if held != lock.confirmed_version:
        lock.confirmed_version = held
        lock.confirmed_at = now
    renumbered = held > lock.revocation_version
    if renumbered:
        lock.revocation_version = held + 1
    if held == lock.revocation_version:
        lock.push_due_at = None
        lock.push_attempts = 0
        lock.push_error = None
    else:
        # The lock holds an older list (a newer revoke raced us) or one from another
        # life (numbered above it just now): push again now.
        lock.push_due_at = now
    lock.audit_due_at = now  # the lock just logged the push; pull it
    session.commit()
    return Ack(lock.revocation_version, renumbered)


def push_full_list(session: Session, lock_id: uuid.UUID, *, actor: Actor, now: dt.datetime) -> Lock:
    """An admin asks for the lock's full list to be pushed now, without a revoke."""
    lock = locks.get_active(session, lock_id, for_update=True)
    schedule_full_push(lock, now)
    detail = f"version {lock.revocation_version}"
    admin_audit.record(
        session, actor, Action.LOCK_PUSH_REVOCATIONS, now=now, lock_id=lock.id, detail=detail
    )
    session.commit()
    return lock


def schedule_full_push(lock: Lock, now: dt.datetime) -> None:
    """Under the lock's row lock: make its full list due now, numbered so that the lock
    takes it whatever it holds (as far as the server knows)."""
    lock.revocation_version = max(lock.revocation_version, lock.confirmed_version) + 1
    lock.push_due_at = now
    lock.push_attempts = 0


def record_failure(
    session: Session,
    lock_id: uuid.UUID,
    error: str,
    *,
    now: dt.datetime,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> Lock:
    """The push failed: back off exponentially, with jitter, up to ``cap``."""
    lock = _locked(session, lock_id)
    lock.push_attempts += 1
    lock.push_error = error[:MAX_ERROR]
    if lock.revocation_version != lock.confirmed_version and lock.retired_at is None:
        delay = min(cap, base * 2 ** min(lock.push_attempts - 1, 30))
        delay *= 0.8 + 0.4 * (rng or random).random()
        lock.push_due_at = now + dt.timedelta(seconds=min(delay, cap))
    session.commit()
    return lock


def reachable(session: Session, lock_id: uuid.UUID, *, now: dt.datetime) -> None:
    """The lock answered something else (an audit pull): retry a pending push now."""
    lock = _locked(session, lock_id)
    lock.last_seen_at = now
    pending = lock.revocation_version != lock.confirmed_version
    if pending and lock.push_due_at is not None and lock.push_due_at > now:
        lock.push_due_at = now
    session.commit()


def _locked(session: Session, lock_id: uuid.UUID) -> Lock:
    return session.scalars(
        select(Lock)
        .where(Lock.id == lock_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
