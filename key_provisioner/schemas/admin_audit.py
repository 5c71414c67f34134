"""Admin audit bodies: who (which API token, from where) changed what."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from pydantic import BaseModel, Field

from key_provisioner.schemas.common import PageBase


class Action(enum.StrEnum):
    """What changed; the first part names the kind of thing changed."""

    LOCK_ENROL = "lock.enrol"
    LOCK_RETIRE = "lock.retire"
    LOCK_PUSH_REVOCATIONS = "lock.push_revocations"
    SECURE_ELEMENT_REGISTER = "secure_element.register"
    KEY_ISSUE = "key.issue"
    KEY_REVOKE = "key.revoke"
    KEY_PUSH_RETRY = "key.push_retry"


class AdminAuditEntryPublic(BaseModel):
    id: int = Field(description="The row's id (increasing).")
    at: dt.datetime = Field(description="When the change was made (the server's clock).")
    token_id: uuid.UUID = Field(description="The API token that made it (its id: `token list`).")
    token_name: str = Field(description="That token's name.")
    client: str = Field(
        description="The request's client address, as the server saw it (see docs/operations.md)."
    )
    action: Action
    lock_id: uuid.UUID | None = Field(description="The lock changed, or the key's lock.")
    key_uuid: uuid.UUID | None = Field(description="The key changed (its `id`).")
    secure_element_id: uuid.UUID | None = Field(
        description="The secure element registered, or the key's."
    )
    detail: str = Field(
        description="A lock's name, a card's SEID, a key's key id and label, a revoke reason ...",
    )


class AdminAuditPage(PageBase):
    items: list[AdminAuditEntryPublic]
