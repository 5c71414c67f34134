"""Who did what: the admin audit trail, expiring API tokens with their last use, and an
index for the key_id filter.

``admin_audit`` holds one row per change an API token made (``services.admin_audit``).
API tokens get an optional expiry and the time and client address of their last
use (existing tokens: no expiry, never used as far as the server knows). Keys get
an index on ``key_id``: the filter ``GET /keys?key_id=`` without a lock scanned
the whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", _TS, nullable=True))
        batch.add_column(sa.Column("last_used_at", _TS, nullable=True))
        batch.add_column(sa.Column("last_used_from", sa.String(100), nullable=True))
    op.create_index("ix_keys_key_id_issued_at_id", "keys", ["key_id", "issued_at", "id"])
    _create_admin_audit()


def _create_admin_audit() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "admin_audit",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("token_id", sa.Uuid(), nullable=False),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("lock_id", sa.Uuid(), nullable=True),
        sa.Column("key_uuid", sa.Uuid(), nullable=True),
        sa.Column("secure_element_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name="fk_admin_audit_token_id_api_tokens"
        ),
        sa.ForeignKeyConstraint(["lock_id"], ["locks.id"], name="fk_admin_audit_lock_id_locks"),
        sa.ForeignKeyConstraint(["key_uuid"], ["keys.id"], name="fk_admin_audit_key_uuid_keys"),
        sa.ForeignKeyConstraint(
            ["secure_element_id"],
            ["secure_elements.id"],
            name="fk_admin_audit_secure_element_id_secure_elements",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_admin_audit"),
    )
    for column in ("token_id", "lock_id", "key_uuid", "secure_element_id"):
        op.create_index(f"ix_admin_audit_{column}_id", "admin_audit", [column, "id"])


def downgrade() -> None:
    op.drop_table("admin_audit")
    op.drop_index("ix_keys_key_id_issued_at_id", table_name="keys")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_from")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
