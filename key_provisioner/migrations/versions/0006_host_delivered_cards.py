"""Cards reached through their host: ``racs_server`` optional, the time of the last sync.

A secure element without a RACS server is one whose host dials the key server
(``coap-open --sync``, the phone app) and relays TLS#2; ``synced_at`` is when
such a card last completed a sync (shown in the API, for "has Alice's phone
taken its keys").

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"  # written on 0003; rechained onto main's 0004 when main was merged
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("secure_elements") as batch:
        batch.alter_column("racs_server", existing_type=sa.String(260), nullable=True)
        batch.add_column(sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Fails while a card reached through its host is registered (it has no RACS server)."""
    with op.batch_alter_table("secure_elements") as batch:
        batch.drop_column("synced_at")
        batch.alter_column("racs_server", existing_type=sa.String(260), nullable=False)
