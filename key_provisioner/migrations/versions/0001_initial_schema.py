"""Initial schema: locks, secure elements, keys, audit entries, API tokens.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_ACTIVE = sa.text("retired_at IS NULL")
_REVOKED = sa.text("revoked_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "locks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("lock_tag", sa.String(4), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(64), nullable=True),
        sa.Column("enrolled_at", _TS, nullable=False),
        sa.Column("retired_at", _TS, nullable=True),
        sa.Column("last_seen_at", _TS, nullable=True),
        sa.Column("revocation_version", sa.BigInteger(), nullable=False),
        sa.Column("confirmed_version", sa.BigInteger(), nullable=False),
        sa.Column("confirmed_at", _TS, nullable=True),
        sa.Column("push_due_at", _TS, nullable=True),
        sa.Column("push_attempts", sa.Integer(), nullable=False),
        sa.Column("push_error", sa.String(300), nullable=True),
        sa.Column("audit_cursor", sa.BigInteger(), nullable=False),
        sa.Column("audit_due_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locks")),
    )
    op.create_index(op.f("ix_locks_audit_due_at"), "locks", ["audit_due_at"])
    op.create_index(op.f("ix_locks_push_due_at"), "locks", ["push_due_at"])
    op.create_index("ix_locks_enrolled_at_id", "locks", ["enrolled_at", "id"])
    op.create_index(
        "uq_locks_name_active",
        "locks",
        ["name"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.create_table(
        "secure_elements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seid", sa.String(64), nullable=False),
        sa.Column("racs_server", sa.String(260), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("registered_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secure_elements")),
        sa.UniqueConstraint("seid", name=op.f("uq_secure_elements_seid")),
    )
    op.create_index(
        "ix_secure_elements_registered_at_id", "secure_elements", ["registered_at", "id"]
    )
    op.create_table(
        "audit_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lock_id", sa.Uuid(), nullable=False),
        sa.Column("lock_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("key_id", sa.String(12), nullable=True),
        sa.Column("peer", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.ForeignKeyConstraint(
            ["lock_id"], ["locks.id"], name=op.f("fk_audit_entries_lock_id_locks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint(
            "lock_id", "lock_entry_id", name=op.f("uq_audit_entries_lock_id_lock_entry_id")
        ),
    )
    op.create_index(
        "ix_audit_entries_lock_id_key_id_id", "audit_entries", ["lock_id", "key_id", "id"]
    )
    op.create_table(
        "keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lock_id", sa.Uuid(), nullable=False),
        sa.Column("secure_element_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("identity", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("rights", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("weekdays", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.Integer(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revoke_reason", sa.String(200), nullable=True),
        sa.Column("pushed_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["lock_id"], ["locks.id"], name=op.f("fk_keys_lock_id_locks")),
        sa.ForeignKeyConstraint(
            ["secure_element_id"],
            ["secure_elements.id"],
            name=op.f("fk_keys_secure_element_id_secure_elements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keys")),
        sa.UniqueConstraint("identity", name=op.f("uq_keys_identity")),
        sa.UniqueConstraint("lock_id", "key_id", name=op.f("uq_keys_lock_id_key_id")),
    )
    op.create_index("ix_keys_issued_at_id", "keys", ["issued_at", "id"])
    op.create_index("ix_keys_lock_id_issued_at_id", "keys", ["lock_id", "issued_at", "id"])
    op.create_index(
        "ix_keys_secure_element_id_issued_at_id", "keys", ["secure_element_id", "issued_at", "id"]
    )
    op.create_index("ix_keys_label_issued_at_id", "keys", ["label", "issued_at", "id"])
    op.create_index(
        "ix_keys_revoked_lock_id",
        "keys",
        ["lock_id", "not_after"],
        sqlite_where=_REVOKED,
        postgresql_where=_REVOKED,
    )


def downgrade() -> None:
    op.drop_table("keys")
    op.drop_table("audit_entries")
    op.drop_table("secure_elements")
    op.drop_table("locks")
    op.drop_table("api_tokens")
