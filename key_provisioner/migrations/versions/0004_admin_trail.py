"""Who did what: expiring API tokens with their last use; an index for the key_id filter.

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


def downgrade() -> None:
    op.drop_index("ix_keys_key_id_issued_at_id", table_name="keys")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_from")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
