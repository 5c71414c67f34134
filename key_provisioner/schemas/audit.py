"""Audit bodies: rows of a lock's own log, as pulled from the lock."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from key_provisioner.schemas.common import PageBase


class AuditEntryPublic(BaseModel):
    id: int = Field(description="The server's id of this row (increasing).")
    lock_id: uuid.UUID
    lock_entry_id: int = Field(description="The row's id in the lock's own log.")
    audit_generation: int = Field(
        description=(
            "The lock's `audit_generation` when the row was pulled: the lock's row ids start "
            "again when its log does, so a row is (`lock_entry_id`, `audit_generation`)."
        )
    )
    at: dt.datetime = Field(description="When the lock recorded it (the lock's clock).")
    key_id: str | None = Field(description="The key involved, if the peer presented one.")
    peer: str
    action: str = Field(examples=["open", "push revocations", "handshake"])
    outcome: Literal["granted", "refused"]
    reason: str


class AuditPage(PageBase):
    items: list[AuditEntryPublic]
