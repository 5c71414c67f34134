"""From rows to response bodies, and from request bodies to service inputs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from elock_common import Rights
from elock_common.identity import NO_NOT_AFTER
from key_provisioner.db.models import AuditEntry, Key, Lock, SecureElement
from key_provisioner.schemas.audit import AuditEntryPublic
from key_provisioner.schemas.keys import (
    WEEKDAYS,
    KeyCreate,
    KeyPublic,
    KeyPush,
    PushState,
    Right,
    Weekday,
)
from key_provisioner.schemas.locks import LockPublic, RevocationStatus
from key_provisioner.schemas.secure_elements import CertificateInfo, SecureElementPublic
from key_provisioner.services import keys, secure_elements
from key_provisioner.services.keys import NewKey

_RIGHTS: dict[Right, Rights] = {"open": Rights.OPEN, "admin": Rights.ADMIN}


def lock_public(lock: Lock) -> LockPublic:
    in_sync = lock.confirmed_version == lock.revocation_version
    pending = not in_sync and lock.retired_at is None
    return LockPublic(
        id=lock.id,
        name=lock.name,
        host=lock.host,
        port=lock.port,
        lock_tag=lock.lock_tag,
        enrolled_at=lock.enrolled_at,
        retired_at=lock.retired_at,
        last_seen_at=lock.last_seen_at,
        connected=lock.sync_session is not None and lock.retired_at is None,
        clock_offset_seconds=lock.clock_offset,
        max_clock_skew_seconds=lock.max_clock_skew,
        audit_cursor=lock.audit_cursor,
        audit_generation=lock.audit_generation,
        revocation=RevocationStatus(
            version=lock.revocation_version,
            confirmed_version=lock.confirmed_version,
            confirmed_at=lock.confirmed_at,
            in_sync=in_sync,
            attempts=lock.push_attempts,
            next_attempt_at=lock.push_due_at if pending else None,
            last_error=lock.push_error,
        ),
    )


def secure_element_public(element: SecureElement) -> SecureElementPublic:
    certificate = None
    if element.certificate_pem:
        facts = secure_elements.parse_certificate(element.certificate_pem)
        certificate = CertificateInfo(
            pem=facts.pem,
            sha256=facts.sha256,
            subject=facts.subject,
            not_valid_after=facts.not_valid_after,
        )
    return SecureElementPublic(
        id=element.id,
        seid=element.seid,
        racs_server=element.racs_server,
        delivery="racs" if element.racs_server else "host",
        synced_at=element.synced_at,
        label=element.label,
        registered_at=element.registered_at,
        certificate=certificate,
    )


def key_public(key: Key, now: dt.datetime) -> KeyPublic:
    return KeyPublic.model_validate(key_fields(key, now))


def key_fields(key: Key, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": key.id,
        "key_id": key.key_id,
        "lock_id": key.lock_id,
        "secure_element_id": key.secure_element_id,
        "identity": key.identity,
        "label": key.label,
        "rights": [name for name, bit in _RIGHTS.items() if key.rights & bit],
        "max_uses": key.max_uses,
        "one_time": key.max_uses == 1,
        "weekdays": [day for i, day in enumerate(WEEKDAYS) if key.weekdays & (1 << i)],
        "window_start": key.window_start,
        "window_end": key.window_end,
        "not_before": _instant(key.not_before) if key.not_before else None,
        "not_after": _instant(key.not_after) if key.not_after != NO_NOT_AFTER else None,
        "state": keys.state(key, now),
        "issued_at": key.issued_at,
        "revoked_at": key.revoked_at,
        "revoke_reason": key.revoke_reason,
        "pushed_at": key.pushed_at,
        "push": KeyPush(
            state=PushState(key.push_state),
            container_id=key.container_id,
            attempts=key.push_attempts,
            next_attempt_at=(
                key.push_due_at if key.push_state in ("pending", "removing") else None
            ),
            last_error=key.push_error,
            removed_at=key.removed_at,
        ),
    }


def new_key(body: KeyCreate) -> NewKey:
    rights = Rights(0)
    for name in body.rights:
        rights |= _RIGHTS[name]
    return NewKey(
        lock_id=body.lock_id,
        secure_element_id=body.secure_element_id,
        label=body.label,
        rights=rights,
        not_before=body.not_before,
        not_after=body.not_after,
        weekdays=weekday_mask(body.weekdays),
        window_start=body.window_start,
        window_end=body.window_end,
        max_uses=1 if body.one_time else body.max_uses,
    )


def weekday_mask(days: list[Weekday]) -> int:
    mask = 0
    for day in days:
        mask |= 1 << WEEKDAYS.index(day)
    return mask


def audit_public(entry: AuditEntry) -> AuditEntryPublic:
    return AuditEntryPublic(
        id=entry.id,
        lock_id=entry.lock_id,
        lock_entry_id=entry.lock_entry_id,
        audit_generation=entry.audit_generation,
        at=entry.at,
        key_id=entry.key_id,
        peer=entry.peer,
        action=entry.action,
        outcome="granted" if entry.outcome == "granted" else "refused",
        reason=entry.reason,
    )


def _instant(unix: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, dt.UTC)
