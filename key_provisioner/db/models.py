"""Tables of the key server.

A key row holds the identity (public) and the claims copied out of it for
filtering, never the PSK. A lock row holds its sealed secret and the state of
revocation delivery: the version the server wants it to hold, the version it
last confirmed, and when the next push is due. ``push_due_at`` doubles as the
lease of a worker that claimed the push (see ``services.revocations``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from key_provisioner.db.base import Base, BigId, UtcDateTime

CONTAINER_HELD = "container_id IS NOT NULL AND push_state IN ('pending', 'installed', 'removing')"


class Lock(Base):
    __tablename__ = "locks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int]
    lock_tag: Mapped[str] = mapped_column(String(4))
    # AES-GCM sealed K_lock; wiped when the lock is retired.
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    enrolled_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    revocation_version: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed_version: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    push_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    push_attempts: Mapped[int] = mapped_column(default=0)
    push_error: Mapped[str | None] = mapped_column(String(300))

    audit_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    # The lock's row ids start again when its state is lost or replaced: each time
    # the server finds that, the log is read again from the start as a new generation.
    audit_generation: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    audit_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)

    # The lock's own connection (``services.lock_sync``): the token of the connection
    # holding the lock, when it connected, its clock minus ours, its audit log's id.
    sync_session: Mapped[str | None] = mapped_column(String(32))
    sync_connected_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    clock_offset: Mapped[float | None] = mapped_column(Float)
    max_clock_skew: Mapped[float | None] = mapped_column(Float)  # the lock's own bound
    audit_log_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # Names are unique among locks in service; a retired lock frees its name.
        Index(
            "uq_locks_name_active",
            "name",
            unique=True,
            sqlite_where=text("retired_at IS NULL"),
            postgresql_where=text("retired_at IS NULL"),
        ),
        Index("ix_locks_enrolled_at_id", "enrolled_at", "id"),
    )


class SecureElement(Base):
    __tablename__ = "secure_elements"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    seid: Mapped[str] = mapped_column(String(64), unique=True)
    # host:port of the RACS server that hosts the card; None: the card's host dials
    # the key server and relays TLS#2 (``api/card_sync.py``), as a phone behind NAT does.
    racs_server: Mapped[str | None] = mapped_column(String(260))
    synced_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # last host sync
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(100), default="")
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_secure_elements_registered_at_id", "registered_at", "id"),)


class Key(Base):
    __tablename__ = "keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    lock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locks.id"))
    secure_element_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("secure_elements.id"))
    key_id: Mapped[str] = mapped_column(String(12))
    identity: Mapped[str] = mapped_column(String(32), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    rights: Mapped[int]
    not_before: Mapped[int] = mapped_column(BigInteger)
    not_after: Mapped[int] = mapped_column(BigInteger)
    weekdays: Mapped[int]
    window_start: Mapped[int]
    window_end: Mapped[int]
    max_uses: Mapped[int]
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(200))
    # Set by the provisioning hook once the container is in the secure element.
    pushed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Delivery into the secure element (``services.provisioning``): the state
    # (pending, installed, failed, removing, removed), the container id the key
    # has on its card (1..16, given at its first push and kept), and the retry
    # schedule. ``push_due_at`` doubles as the lease of the worker that claimed it.
    push_state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    container_id: Mapped[int | None]
    push_due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    push_attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    push_error: Mapped[str | None] = mapped_column(String(300))
    # A card visit holds it now (from its claim to its record_*): ``push_due_at`` is then
    # that visit's lease, not a retry's backoff, and a revoke waits for the visit to end.
    push_leased: Mapped[bool] = mapped_column(default=False, server_default=false())
    removed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("lock_id", "key_id"),
        Index("ix_keys_issued_at_id", "issued_at", "id"),
        Index("ix_keys_lock_id_issued_at_id", "lock_id", "issued_at", "id"),
        Index("ix_keys_secure_element_id_issued_at_id", "secure_element_id", "issued_at", "id"),
        Index("ix_keys_label_issued_at_id", "label", "issued_at", "id"),
        # The key_id filter without a lock (GET /keys?key_id=, finding a key from a
        # lock's audit row): without it, a scan of the whole table.
        Index("ix_keys_key_id_issued_at_id", "key_id", "issued_at", "id"),
        # Revoked keys per lock, for building revocation lists. Partial, so
        # it stays small and no planner mistakes it for a way to find live keys.
        Index(
            "ix_keys_revoked_lock_id",
            "lock_id",
            "not_after",
            sqlite_where=text("revoked_at IS NOT NULL"),
            postgresql_where=text("revoked_at IS NOT NULL"),
        ),
        # A container id is held on its card while the container may be there.
        Index(
            "uq_keys_secure_element_id_container_id",
            "secure_element_id",
            "container_id",
            unique=True,
            sqlite_where=text(CONTAINER_HELD),
            postgresql_where=text(CONTAINER_HELD),
        ),
    )


class AuditEntry(Base):
    """One row of a lock's audit log, as pulled from the lock: the lock's row id is
    unique within a generation of the lock's log (``Lock.audit_generation``)."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locks.id"))
    lock_entry_id: Mapped[int] = mapped_column(BigInteger)  # the lock's own row id
    audit_generation: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    key_id: Mapped[str | None] = mapped_column(String(12))
    peer: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(300))

    __table_args__ = (
        UniqueConstraint("lock_id", "lock_entry_id", "audit_generation"),
        Index("ix_audit_entries_lock_id_key_id_id", "lock_id", "key_id", "id"),
        # Newest first by id for one lock, or one key id of any lock: a page reads a page.
        Index("ix_audit_entries_lock_id_id", "lock_id", "id"),
        Index("ix_audit_entries_key_id_id", "key_id", "id"),
    )


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # None: never
    # When and from where it last authenticated a request (to the minute, see tokens).
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_used_from: Mapped[str | None] = mapped_column(String(100))


class AdminAuditEntry(Base):
    """One change an API token made (``services.admin_audit``): which token (its id, never
    the token), from which client address, what, and on which lock, key or card."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_tokens.id"))
    client: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    lock_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("locks.id"))
    key_uuid: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("keys.id"))
    secure_element_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("secure_elements.id"))
    detail: Mapped[str] = mapped_column(String(300), default="")

    __table_args__ = (
        Index("ix_admin_audit_token_id_id", "token_id", "id"),
        Index("ix_admin_audit_lock_id_id", "lock_id", "id"),
        Index("ix_admin_audit_key_uuid_id", "key_uuid", "id"),
        Index("ix_admin_audit_secure_element_id_id", "secure_element_id", "id"),
    )
