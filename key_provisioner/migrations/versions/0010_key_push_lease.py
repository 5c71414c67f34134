"""Whether a card visit holds a key now (``keys.push_leased``).

``push_due_at`` is a claimed key's lease and a failed try's backoff alike, so a
revoke could not tell them apart and waited for either: the delete of a key
revoked while it waited out a 300 s backoff came 300 s late. A visit in flight
at the upgrade is taken as none (its record_* clears the flag anyway).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(
            sa.Column("push_leased", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("push_leased")
