"""A lock's own clock bound, as it says in each sync hello.

The console warned when a lock's clock was more than 300 s off, the lock's
default; a lock configured with another ``sync.max_clock_skew_seconds`` refused
time-bounded keys at its own bound, with no warning or with a false one.
Null until the lock next connects.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("max_clock_skew", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("max_clock_skew")
