"""Indexes for a page of audit rows of one lock, or of one key id.

``GET /locks/{id}/audit`` and ``GET /audit?lock_id=`` are newest first by ``id``:
with only (lock_id, key_id, id), each page read every row of the lock and sorted
them, or walked the whole table backwards past other locks' rows.
``GET /audit?key_id=`` had no index at all and scanned the table. An auditor
token could make any page cost the whole log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_entries_lock_id_id", "audit_entries", ["lock_id", "id"])
    op.create_index("ix_audit_entries_key_id_id", "audit_entries", ["key_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_entries_key_id_id", table_name="audit_entries")
    op.drop_index("ix_audit_entries_lock_id_id", table_name="audit_entries")
