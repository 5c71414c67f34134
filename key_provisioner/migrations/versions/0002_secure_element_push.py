"""Delivery of keys into secure elements: push state, container id, retry schedule.

Existing keys: those already pushed are ``installed``, revoked ones ``removed``
(nothing tracked their containers before), the rest ``pending``.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_HELD = sa.text("container_id IS NOT NULL AND push_state IN ('pending', 'installed', 'removing')")


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(
            sa.Column("push_state", sa.String(16), server_default="pending", nullable=False)
        )
        batch.add_column(sa.Column("container_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("push_due_at", _TS, nullable=True))
        batch.add_column(
            sa.Column("push_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("push_error", sa.String(300), nullable=True))
        batch.add_column(sa.Column("removed_at", _TS, nullable=True))
    op.execute("UPDATE keys SET push_state = 'installed' WHERE pushed_at IS NOT NULL")
    op.execute("UPDATE keys SET push_state = 'removed' WHERE revoked_at IS NOT NULL")
    op.create_index(op.f("ix_keys_push_due_at"), "keys", ["push_due_at"])
    op.create_index(
        "uq_keys_secure_element_id_container_id",
        "keys",
        ["secure_element_id", "container_id"],
        unique=True,
        sqlite_where=_HELD,
        postgresql_where=_HELD,
    )


def downgrade() -> None:
    op.drop_index("uq_keys_secure_element_id_container_id", table_name="keys")
    op.drop_index(op.f("ix_keys_push_due_at"), table_name="keys")
    with op.batch_alter_table("keys") as batch:
        for column in (
            "removed_at",
            "push_error",
            "push_attempts",
            "push_due_at",
            "container_id",
            "push_state",
        ):
            batch.drop_column(column)
