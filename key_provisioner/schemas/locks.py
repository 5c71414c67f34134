"""Lock bodies. The secret appears once, in ``LockEnrolled.bundle``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from key_provisioner.schemas.common import PageBase, StrictModel

BUNDLE_FORMAT = "elock-lock-bundle/1"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")

LockName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="Unique among locks in service.", examples=["front-door"]),
]
# A new lock's name: printable, and neither blank nor padded with white space ("door"
# and "door " would be two locks nobody can tell apart). Older rows may not match it.
_EDGE = r"[^\s\x00-\x1f\x7f-\x9f]"
NewLockName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=64, pattern=rf"^{_EDGE}([^\x00-\x1f\x7f-\x9f]*{_EDGE})?$"
    ),
    Field(
        description=(
            "Unique among locks in service; printable, not blank, no white space at either end."
        ),
        examples=["front-door"],
    ),
]


class LockBase(BaseModel):
    name: LockName
    host: str = Field(
        description=(
            "IP address or DNS name where the lock's CoAP server listens, as key holders "
            "reach it (the URI in their keys). The key server never connects to it: the "
            "lock dials the key server."
        ),
        examples=["192.0.2.10"],
        min_length=1,
        max_length=253,
    )
    port: int = Field(default=5684, ge=1, le=65535, description="UDP port of coaps.")


class LockCreate(LockBase, StrictModel):
    name: NewLockName

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.match(value) or value.replace(".", "").isdigit():
                raise ValueError("host must be an IP address or a DNS name") from None
            return value.lower()
        if why := unusable_address(address):
            raise ValueError(f"host {address} is {why}: no lock can be reached there")
        return str(address)


def unusable_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why nobody can send a datagram to one lock at this address, if so.

    The lock itself refuses an unspecified address; the others would enrol a lock
    that is never reached. Checked before the one-time bundle is made.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "unspecified (0.0.0.0 or ::)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address.is_reserved:
        return "a broadcast or reserved (240.0.0.0/4) address"
    return None


class RevocationStatus(BaseModel):
    """Where delivery of this lock's revocation list stands."""

    version: int = Field(description="Version of the list the server wants the lock to hold.")
    confirmed_version: int = Field(description="Version the lock last acknowledged holding.")
    confirmed_at: dt.datetime | None = Field(description="When the lock acknowledged it.")
    in_sync: bool = Field(description="True when the lock holds the current version.")
    attempts: int = Field(description="Failed push attempts since the last success.")
    next_attempt_at: dt.datetime | None = Field(
        description="When the next push is due (null when nothing is pending)."
    )
    last_error: str | None = Field(description="Why the last push failed, if it did.")


class LockPublic(LockBase):
    id: uuid.UUID
    lock_tag: str = Field(description="The 2-byte tag of this lock inside key identities (hex).")
    enrolled_at: dt.datetime
    retired_at: dt.datetime | None
    last_seen_at: dt.datetime | None = Field(
        description="Last time the lock was heard on its sync connection."
    )
    connected: bool = Field(
        description="The lock holds a sync connection to a key-server process now."
    )
    clock_offset_seconds: float | None = Field(
        description=(
            "The lock's clock minus the key server's, as last measured (positive: the lock "
            "is ahead); null before its first connection."
        )
    )
    max_clock_skew_seconds: float | None = Field(
        description=(
            "The lock's own bound (its `sync.max_clock_skew_seconds`, told at each connection): "
            "with its clock further than this from the key server's it refuses time-bounded "
            "keys. Null before its first connection."
        )
    )
    revocation: RevocationStatus
    audit_cursor: int = Field(description="Id of the last audit row pulled from the lock.")
    audit_generation: int = Field(
        description=(
            "0, and one more each time the server found that the lock's audit log had started "
            "again (its state lost or replaced) and read it again from the start."
        )
    )


class LockPage(PageBase):
    items: list[LockPublic]


class LockBundle(BaseModel):
    """What `elock-lock init --bundle FILE` installs. Holds the lock secret."""

    format: Literal["elock-lock-bundle/1"] = "elock-lock-bundle/1"
    lock_id: uuid.UUID
    name: str
    secret: str = Field(description="K_lock, base64url. Shown once; never again.")
    host: str
    port: int
    sync_url: str | None = Field(
        description=(
            "Where the lock dials its key server (the server's `sync.url`); null when the "
            "server has none set, and the lock then syncs with nothing."
        )
    )
    sync_ca: str | None = Field(
        default=None,
        description=(
            "The CA certificate(s), PEM, the lock trusts for `sync_url` (the server's "
            "`sync.ca_file`), and no other; null: the lock's system trust store."
        ),
    )


class LockEnrolled(BaseModel):
    lock: LockPublic
    bundle: LockBundle
