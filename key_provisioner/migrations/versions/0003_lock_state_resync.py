"""Locks whose state was replaced: audit log generations; revocation versions above ours.

A lock's audit row ids start again at 1 when its state is lost or replaced; the
server then reads the log again as a new generation, so its rows are unique by
(lock, lock row id, generation).

Before this revision the server took a lock's answer of a revocation version
above its own as confirmed and stopped pushing, while the lock ignored every
list not above that version. Such locks (``confirmed_version`` above
``revocation_version``) get their list numbered above the lock's and pushed at
once.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_OLD_UNIQUE = "uq_audit_entries_lock_id_lock_entry_id"
_NEW_UNIQUE = "uq_audit_entries_lock_id_lock_entry_id_audit_generation"


def upgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.add_column(
            sa.Column("audit_generation", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(
            sa.Column("audit_generation", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.drop_constraint(_OLD_UNIQUE, type_="unique")
        batch.create_unique_constraint(
            _NEW_UNIQUE, ["lock_id", "lock_entry_id", "audit_generation"]
        )
    # enrolled_at: a time in the past, of the column's own type on either database.
    op.execute(
        "UPDATE locks SET revocation_version = confirmed_version + 1, push_due_at = enrolled_at"
        " WHERE confirmed_version > revocation_version AND retired_at IS NULL"
    )


def downgrade() -> None:
    """Fails if a lock's audit log was read again (the same lock row id twice)."""
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_constraint(_NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(_OLD_UNIQUE, ["lock_id", "lock_entry_id"])
        batch.drop_column("audit_generation")
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("audit_generation")
