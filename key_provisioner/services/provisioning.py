"""Delivery of keys into their secure elements (through RACS, ``elock_push``).

Each key row carries its push: ``push_state`` is

- ``pending``: to be installed (issuing makes it due at once);
- ``installed``: the container is in the card;
- ``failed``: it cannot be installed as things are, ``push_error`` says why
  (an untrusted card certificate, a card full, a container id held by another
  key); the worker does not retry it, an admin may (``key_push.retry``, once
  the cause is fixed);
- ``removing``: the key was revoked (or its lock retired); its container is
  to be deleted;
- ``removed``: not on the card any more (deleted, or never written).

The worker claims due pushes like revocation pushes: ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, ``push_due_at`` moved forward by a lease, commit, then
the RACS session outside any transaction. The PSK is derived again from the
lock secret at each claim and kept in memory only; the server never stores it.
A key gets a container id (1..16, lowest free on its card) at its first claim
and keeps it, so every retry writes the same container (idempotent).
Cards reached through their host (no RACS server) are never claimed by the
worker: their host's sync claims them (``claim_for_card``), and a sync that
broke off leaves them due for the next one (``record_released``). The states
and their transitions are one table, ``push_lifecycle``.
Transient failures (RACS unreachable, a cut connection) are retried with
backoff; a card busy with another RACS session (another worker visiting it) is
retried soon, without counting as a failed try; the rest are ``failed``. The
transitions a request causes (revoke, retire, retry) are in ``key_push``.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from elock_common.container import MAX_CONTAINERS, MAX_LABEL, KeyContainer
from elock_common.errors import ContainerFormatError
from key_provisioner.core.crypto import SecretBox
from key_provisioner.core.errors import LockRetiredError, SecretUnavailableError
from key_provisioner.db.engine import is_postgresql
from key_provisioner.db.models import Key, Lock, SecureElement
from key_provisioner.schemas.keys import PushState
from key_provisioner.services import key_push, locks
from key_provisioner.services.push_lifecycle import PushEvent, next_state

MAX_ERROR = 300


@dataclass(frozen=True)
class SePushJob:
    """One key to install or delete; ``container`` (with the PSK) lives in memory only."""

    key_uuid: uuid.UUID
    seid: str
    racs_server: str | None  # None: the card's host relays (a sync), no worker visit
    state: PushState  # what the claim saw: PENDING (install) or REMOVING (delete)
    container_id: int
    identity: bytes
    container: KeyContainer | None = None

    @property
    def install(self) -> bool:
        return self.state is PushState.PENDING


def claim_due(
    session: Session, box: SecretBox, *, now: dt.datetime, lease: float, limit: int
) -> list[SePushJob]:
    """The worker's claim: due keys of cards behind a RACS server (hosts dial in themselves)."""
    behind_racs = select(SecureElement.id).where(SecureElement.racs_server.is_not(None))
    query = (
        select(Key)
        .where(
            Key.push_state.in_([PushState.PENDING, PushState.REMOVING]),
            Key.push_due_at.is_not(None),
            Key.push_due_at <= now,
            Key.secure_element_id.in_(behind_racs),
        )
        .order_by(Key.push_due_at)
        .limit(limit)
    )
    return _claim(session, box, query, now=now, lease=lease)


def claim_for_card(
    session: Session, box: SecretBox, element: SecureElement, *, now: dt.datetime, lease: float
) -> list[SePushJob]:
    """A host sync's claim: every due key of this one card (all of them, in one session).

    A key another sync of the same card holds (its lease not run out) is left
    to that sync; at most ``MAX_CONTAINERS`` installs fit a card, and deletes
    are as many as the card held, so the batch is bounded by the card itself.
    """
    query = (
        select(Key)
        .where(
            Key.secure_element_id == element.id,
            Key.push_state.in_([PushState.PENDING, PushState.REMOVING]),
            Key.push_due_at.is_not(None),
            Key.push_due_at <= now,
        )
        .order_by(Key.push_due_at)
        .limit(4 * MAX_CONTAINERS)
    )
    return _claim(session, box, query, now=now, lease=lease)


def _claim(
    session: Session, box: SecretBox, query: Select[Any], *, now: dt.datetime, lease: float
) -> list[SePushJob]:
    if is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    jobs: list[SePushJob] = []
    keys: list[Key] = list(session.scalars(query).all())
    for key in keys:
        key.push_due_at = now + dt.timedelta(seconds=lease)
        element = session.get(SecureElement, key.secure_element_id)
        assert element is not None  # a foreign key
        if key.push_state == PushState.REMOVING:
            assert key.container_id is not None  # revoke only schedules a delete then
            job: SePushJob | None = _job(key, element, PushState.REMOVING, key.container_id)
        else:
            job = _install_job(session, box, key, element, now)
        if job is not None:
            key.push_leased = True  # until its record_*: a revoke then waits for it
            jobs.append(job)
    session.commit()
    return jobs


def _install_job(
    session: Session, box: SecretBox, key: Key, element: SecureElement, now: dt.datetime
) -> SePushJob | None:
    lock = session.get(Lock, key.lock_id)
    assert lock is not None
    try:
        secret = locks.unseal(box, lock)
    except LockRetiredError:
        _fail(key, "the lock is retired: its secret, and so the key's PSK, are gone")
        return None
    except SecretUnavailableError as exc:
        key.push_error = exc.detail[:MAX_ERROR]  # retried when the lease runs out
        return None
    if key.container_id is None:
        key.container_id = _free_container_id(session, element)
        if key.container_id is None:
            _fail(key, f"the card has no free container id (all {MAX_CONTAINERS} held)")
            return None
    identity = key.identity.encode("ascii")
    try:
        container = KeyContainer(
            key.container_id,
            _label(key.label or lock.name),
            lock_uri(lock),
            identity,
            secret.derive_psk(identity),
            not_before=key.not_before,
            not_after=key.not_after,
        )
    except ContainerFormatError as exc:
        _fail(key, f"cannot build the key container: {exc}")
        return None
    return _job(key, element, PushState.PENDING, key.container_id, container)


def _job(
    key: Key,
    element: SecureElement,
    state: PushState,
    container_id: int,
    container: KeyContainer | None = None,
) -> SePushJob:
    return SePushJob(
        key.id,
        element.seid,
        element.racs_server,
        state,
        container_id,
        key.identity.encode("ascii"),
        container,
    )


def _free_container_id(session: Session, element: SecureElement) -> int | None:
    """The lowest container id no live key holds on this card (the SE row serializes)."""
    held = key_push.held_container_ids(session, element.id)
    return next((n for n in range(1, MAX_CONTAINERS + 1) if n not in held), None)


def _label(text: str) -> str:
    label = "".join(ch if ch.isprintable() else " " for ch in text)
    while len(label.encode("utf-8")) > MAX_LABEL:
        label = label[:-1]
    return label


def lock_uri(lock: Lock) -> str:
    return f"coaps://{_host(lock.host)}:{lock.port}/lock"


def _fail(key: Key, why: str) -> None:
    key.push_state = next_state(key.push_state, PushEvent.REFUSED)
    key.push_error = why[:MAX_ERROR]
    key.push_due_at = None
    key.push_attempts += 1


def _locked_key(session: Session, key_uuid: uuid.UUID) -> Key:
    """The key of a job that has ended, under its row lock: its claim ends here."""
    key = session.scalars(
        select(Key)
        .where(Key.id == key_uuid)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    key.push_leased = False
    return key


def _moved_on(key: Key, job: SePushJob, now: dt.datetime) -> bool:
    """The key changed state since the claim (revoked mid-install): run what it needs now."""
    if key.push_state == job.state:
        return False
    if key.push_state in (PushState.PENDING, PushState.REMOVING):
        key.push_due_at = now
    return True


def record_done(session: Session, job: SePushJob, note: str = "", *, now: dt.datetime) -> Key:
    """The card holds the container (install) or does not any more (delete)."""
    key = _locked_key(session, job.key_uuid)
    if not _moved_on(key, job, now):
        if job.install:
            key.push_state = next_state(key.push_state, PushEvent.LANDED)
            key.pushed_at = key.pushed_at or now
        else:
            key.push_state = next_state(key.push_state, PushEvent.GONE)
            key.removed_at = now
        key.push_due_at = None
        key.push_attempts = 0
        key.push_error = note[:MAX_ERROR] or None
    session.commit()
    return key


def record_failed(session: Session, job: SePushJob, why: str, *, now: dt.datetime) -> Key:
    """A failure that another try would not fix: ``failed``, with why."""
    key = _locked_key(session, job.key_uuid)
    if not _moved_on(key, job, now):
        _fail(key, why if job.install else f"delete: {why}")
    session.commit()
    return key


def record_retry(
    session: Session,
    job: SePushJob,
    why: str,
    *,
    now: dt.datetime,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> Key:
    """A transient failure: retry after a delay doubling from ``base`` up to ``cap``, ±20%."""
    key = _locked_key(session, job.key_uuid)
    if not _moved_on(key, job, now):
        key.push_state = next_state(key.push_state, PushEvent.TRY_AGAIN)
        key.push_attempts += 1
        key.push_error = why[:MAX_ERROR]
        delay = min(cap, base * 2 ** min(key.push_attempts - 1, 30))
        delay *= 0.8 + 0.4 * (rng or random).random()
        key.push_due_at = now + dt.timedelta(seconds=min(delay, cap))
    session.commit()
    return key


def record_busy(
    session: Session,
    job: SePushJob,
    why: str,
    *,
    now: dt.datetime,
    delay: float,
    rng: random.Random | None = None,
) -> Key:
    """The card was busy with another RACS session (another worker): not a failed try.

    Due again after ``delay`` ±20%, without backing off: the other session
    ends within one visit. ``push_attempts`` is left as it was.
    """
    key = _locked_key(session, job.key_uuid)
    if not _moved_on(key, job, now):
        key.push_error = why[:MAX_ERROR]
        delay *= 0.8 + 0.4 * (rng or random).random()
        key.push_due_at = now + dt.timedelta(seconds=delay)
    session.commit()
    return key


def record_released(session: Session, job: SePushJob, why: str, *, now: dt.datetime) -> Key:
    """A host sync that broke off (link cut, host gone): due again at the card's next sync.

    No backoff: the server does not choose when a host dials, and every sync
    of a card with nothing due is cheap. The try still counts and says why.
    """
    key = _locked_key(session, job.key_uuid)
    if not _moved_on(key, job, now):
        key.push_state = next_state(key.push_state, PushEvent.TRY_AGAIN)
        key.push_attempts += 1
        key.push_error = why[:MAX_ERROR]
        key.push_due_at = now
    session.commit()
    return key


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
