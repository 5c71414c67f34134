"""How eLock's certificates are made: names, lifetimes, key usages (``docs/pki.md``).

Needs ``cryptography``; ``elock_common.pki`` re-exports what callers use.
"""

from __future__ import annotations

import datetime
import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650  # key-server CA and RACS CA: ten years
SE_ISSUER_CA_DAYS = 7300  # outlives the cards it signs
LEAF_DAYS = 397  # TLS server and client certificates: about a year
SE_CERT_DAYS = 3650  # a card's certificate, never beyond its issuer's
BACKDATE = datetime.timedelta(minutes=5)  # tolerate small clock differences
SEID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")  # the RACS SEID alphabet
ORGANIZATION = "eLock"

Now = float | datetime.datetime


class PkiError(Exception):
    """Base of the PKI errors."""


def as_datetime(now: Now) -> datetime.datetime:
    if isinstance(now, datetime.datetime):
        return now.astimezone(datetime.UTC)
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    start: datetime.datetime,
    end: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _usage(*, sign: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str,
    *,
    now: Now,
    days: int = CA_DAYS,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed P-256 CA that may sign end-entity certificates only (pathLen 0)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = as_datetime(now)
    name = _name(common_name, "certificate authorities")
    cert = (
        _builder(name, name, key.public_key(), start, start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    subject: x509.Name,
    start: datetime.datetime,
    days: int,
) -> x509.CertificateBuilder:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise ValueError("eLock certificates hold ECDSA P-256 keys only")
    end = min(start + datetime.timedelta(days=days), issuer_cert.not_valid_after_utc)
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, issuer_cert.subject, public_key, start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )


def issue_tls_certificate(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    *,
    now: Now,
    client: bool = False,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    days: int = LEAF_DAYS,
) -> x509.Certificate:
    """A TLS client and/or server certificate (EKU clientAuth / serverAuth)."""
    if not (client or server):
        raise ValueError("a TLS certificate is for a client, a server or both")
    purposes = [ExtendedKeyUsageOID.CLIENT_AUTH] * client + [
        ExtendedKeyUsageOID.SERVER_AUTH
    ] * server
    unit = "TLS servers" if server else "TLS clients"
    builder = _leaf(
        issuer_cert, issuer_key, public_key, _name(common_name, unit), as_datetime(now), days
    ).add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    names += [x509.UniformResourceIdentifier(uri) for uri in uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def seid_uri(seid: str) -> str:
    return f"urn:elock:seid:{seid}"


def key_server_uri(name: str) -> str:
    return f"urn:elock:key-server:{name}"


def racs_user_uri(user: str) -> str:
    return f"urn:elock:racs-user:{user}"


def issue_se_certificate(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    se_public_key: ec.EllipticCurvePublicKey,
    seid: str,
    now: Now,
) -> x509.Certificate:
    """The certificate of a card's on-card key: CN = SEID, SAN URI urn:elock:seid:SEID."""
    if not SEID_RE.fullmatch(seid):
        raise ValueError(f"{seid!r} is not a valid SEID (RACS alphabet, 1..64 characters)")
    subject = _name(seid, "secure elements")
    return (
        _leaf(issuer_cert, issuer_key, se_public_key, subject, as_datetime(now), SE_CERT_DAYS)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(seid_uri(seid))]),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
