"""Secure elements: register (with an optional certificate), list, show; find one by SEID."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from key_provisioner.core.errors import ConflictError, InvalidRequestError, NotFoundError
from key_provisioner.db.base import utcnow
from key_provisioner.db.models import SecureElement
from key_provisioner.schemas.admin_audit import Action
from key_provisioner.services import admin_audit
from key_provisioner.services.admin_audit import Actor
from key_provisioner.services.pagination import Page, keyset, page_of


@dataclass(frozen=True)
class NewSecureElement:
    seid: str
    racs_server: str | None  # None: the card's host dials us (``api.card_sync``)
    label: str = ""
    certificate_pem: str | None = None


@dataclass(frozen=True)
class CertificateFacts:
    pem: str
    sha256: str
    subject: str
    not_valid_after: dt.datetime


def parse_certificate(pem: str) -> CertificateFacts:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        subject = cert.subject.rfc4514_string()
    except (ValueError, UnicodeEncodeError):
        raise InvalidRequestError("certificate_pem is not one PEM X.509 certificate") from None
    return CertificateFacts(
        pem=cert.public_bytes(Encoding.PEM).decode("ascii"),
        sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
        subject=subject,
        not_valid_after=cert.not_valid_after_utc,
    )


def register(
    session: Session, new: NewSecureElement, *, actor: Actor, now: dt.datetime | None = None
) -> SecureElement:
    pem = parse_certificate(new.certificate_pem).pem if new.certificate_pem else None
    if new.racs_server is not None:
        _, port = new.racs_server.rsplit(":", 1)
        if not 1 <= int(port) <= 65535:
            raise InvalidRequestError("racs_server port must be 1..65535")
    element = SecureElement(
        id=uuid.uuid4(),
        seid=new.seid,
        racs_server=new.racs_server,
        certificate_pem=pem,
        label=new.label,
        registered_at=now or utcnow(),
    )
    session.add(element)
    try:
        session.flush()  # the SEID check
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"secure element {new.seid!r} is already registered") from None
    admin_audit.record(
        session,
        actor,
        Action.SECURE_ELEMENT_REGISTER,
        now=element.registered_at,
        secure_element_id=element.id,
        detail=new.seid,
    )
    session.commit()
    return element


def get(session: Session, element_id: uuid.UUID) -> SecureElement:
    element = session.get(SecureElement, element_id)
    if element is None:
        raise NotFoundError(f"no secure element {element_id}")
    return element


def list_elements(session: Session, *, cursor: str | None, limit: int) -> Page[SecureElement]:
    query = keyset(
        select(SecureElement),
        [SecureElement.registered_at, SecureElement.id],
        [dt.datetime, uuid.UUID],
        cursor,
        limit,
    )
    rows = session.scalars(query).all()
    return page_of(rows, limit, lambda e: (e.registered_at, e.id))


def host_delivered(session: Session, seid: str) -> SecureElement | None:
    """The card registered as reached through its host, with this SEID (None otherwise)."""
    return session.scalars(
        select(SecureElement).where(SecureElement.seid == seid, SecureElement.racs_server.is_(None))
    ).one_or_none()
