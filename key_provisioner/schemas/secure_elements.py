"""Secure element bodies: a SEID, how keys reach it (RACS, or its host), its certificate."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from key_provisioner.schemas.common import Label, PageBase, StrictModel


class SecureElementBase(BaseModel):
    seid: str = Field(
        pattern=r"^[0-9A-Za-z._:-]{1,64}$",
        description="The secure element's identifier (an ICCID, or the RACS SEID).",
        examples=["8933150319000000001"],
    )
    racs_server: str | None = Field(
        default=None,
        max_length=260,
        pattern=r"^([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}$",
        description=(
            "host:port of the RACS server that hosts it ([v6]:port for IPv6). Leave it out"
            " for a card whose host dials the key server (a phone): `coap-open --sync`."
        ),
        examples=["racs.example.net:7443"],
    )
    label: Label = ""


class SecureElementCreate(SecureElementBase, StrictModel):
    certificate_pem: str | None = Field(
        default=None, max_length=20_000, description="The SE's X.509 certificate, PEM."
    )


class CertificateInfo(BaseModel):
    pem: str
    sha256: str = Field(description="SHA-256 of the DER certificate, hex.")
    subject: str
    not_valid_after: dt.datetime


class SecureElementPublic(SecureElementBase):
    id: uuid.UUID
    delivery: Literal["racs", "host"] = Field(
        description=(
            "How keys reach the card: `racs`, the key server dials its RACS server; `host`,"
            " the card's host dials the key server and relays TLS#2 (`coap-open --sync`)."
        )
    )
    synced_at: dt.datetime | None = Field(
        description="When the card's host last completed a sync (host delivery only)."
    )
    registered_at: dt.datetime
    certificate: CertificateInfo | None


class SecureElementPage(PageBase):
    items: list[SecureElementPublic]
