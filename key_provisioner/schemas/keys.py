"""Key bodies. The PSK appears once, in ``KeyIssued``; the identity is public."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from key_provisioner.schemas.common import Label, PageBase, StrictModel

Right = Literal["open", "admin"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LAST_INSTANT = dt.datetime.fromtimestamp(0xFFFFFFFE, dt.UTC)


class KeyState(enum.StrEnum):
    PENDING = "pending"  # not valid yet
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class PushState(enum.StrEnum):
    PENDING = "pending"  # to be installed (waiting for the worker, or retrying)
    INSTALLED = "installed"
    FAILED = "failed"  # will not be retried; last_error says why
    REMOVING = "removing"  # revoked: its container is to be deleted from the card
    REMOVED = "removed"  # not on the card (deleted, or never written)


class KeyPush(BaseModel):
    """Delivery of the key's container into its secure element: through RACS, or the card's
    host's sync (the secure element's ``delivery``); the states mean the same for both."""

    state: PushState
    container_id: int | None = Field(
        description="The container's id on the card (given at the first push, then kept)."
    )
    attempts: int = Field(description="Failed tries since the last success.")
    next_attempt_at: dt.datetime | None = Field(
        description="When the next try is due (pending or removing only)."
    )
    last_error: str | None = Field(
        description="Why the last try failed, or why the push waits (e.g. not configured)."
    )
    removed_at: dt.datetime | None


class KeyBase(BaseModel):
    label: Label = ""
    rights: list[Right] = Field(
        default=["open"], min_length=1, max_length=2, description="What the key may do."
    )
    max_uses: int = Field(
        default=0, ge=0, le=255, description="0: unlimited; 1: one-time; N: an N-use key."
    )
    weekdays: list[Weekday] = Field(
        default=list(WEEKDAYS),
        min_length=1,
        max_length=7,
        description="Days of the week the key works on (the lock's time zone).",
    )
    window_start: int = Field(
        default=0, ge=0, le=1439, description="Daily window start, minutes after midnight."
    )
    window_end: int = Field(
        default=1440, ge=1, le=1440, description="Daily window end, minutes after midnight."
    )


class KeyCreate(KeyBase, StrictModel):
    lock_id: uuid.UUID
    secure_element_id: uuid.UUID = Field(description="The secure element that will hold it.")
    not_before: AwareDatetime | None = Field(
        default=None, description="Valid from (null: from now on, no lower bound)."
    )
    not_after: AwareDatetime | None = Field(
        default=None, description="Valid until (null: no expiry)."
    )
    one_time: bool = Field(default=False, description="Shorthand for max_uses = 1.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        epoch = dt.datetime.fromtimestamp(0, dt.UTC)
        for name in ("not_before", "not_after"):
            value = getattr(self, name)
            if value is not None and not epoch <= value <= LAST_INSTANT:
                raise ValueError(f"{name} must lie between 1970 and 2106")
        if self.not_before and self.not_after and self.not_before >= self.not_after:
            raise ValueError("not_before must be earlier than not_after")
        if self.window_start >= self.window_end:
            raise ValueError("window_start must be earlier than window_end")
        if len(set(self.rights)) != len(self.rights):
            raise ValueError("rights must not repeat")
        if len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("weekdays must not repeat")
        if self.one_time and self.max_uses not in (0, 1):
            raise ValueError("one_time contradicts max_uses")
        return self


class KeyPublic(KeyBase):
    id: uuid.UUID
    key_id: str = Field(description="The random key id inside the identity (12 hex digits).")
    lock_id: uuid.UUID
    secure_element_id: uuid.UUID
    identity: str = Field(description="The DTLS PSK identity (32 ASCII characters).")
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    one_time: bool
    state: KeyState
    issued_at: dt.datetime
    revoked_at: dt.datetime | None
    revoke_reason: str | None
    pushed_at: dt.datetime | None = Field(
        description="When the key container reached the secure element (null: not yet)."
    )
    push: KeyPush


class KeyIssued(KeyPublic):
    """The new key, with its PSK: shown once, never stored, never shown again."""

    psk: str = Field(description="The DTLS PSK (16 ASCII characters).")
    uri: str = Field(description="Where to open: coaps://HOST:PORT/lock.")


class KeyPage(PageBase):
    items: list[KeyPublic]


class KeyRevoke(StrictModel):
    reason: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
