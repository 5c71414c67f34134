"""The calling token, as the admin console needs to know it (never the token itself)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field


class CallerPublic(BaseModel):
    token_id: uuid.UUID
    name: str
    role: str = Field(description="`admin` (reads and changes) or `auditor` (reads only).")
