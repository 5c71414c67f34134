"""Locks dial out: the state of each lock's sync connection.

``sync_session``: the token of the connection that holds the lock now (null when
none does; a second connection claiming the lock while this one is live is
refused). ``clock_offset``: the lock's clock minus the server's, as the lock
last reported it. ``audit_log_id``: the random id of the lock's audit log; a
new one means the lock's state was lost or replaced (its row ids start again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"  # written on 0003 beside 0004 and 0006; rechained when merged
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("sync_session", sa.String(32), nullable=True))
        batch.add_column(sa.Column("sync_connected_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("clock_offset", sa.Float(), nullable=True))
        batch.add_column(sa.Column("audit_log_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        for name in ("audit_log_id", "clock_offset", "sync_connected_at", "sync_session"):
            batch.drop_column(name)
