"""Checking the client's certificate chain against one trust anchor.

A card holds a single trust anchor (the key server's CA) and checks a short,
ordered chain: the leaf first, then its issuers; a trailing copy of the anchor
is dropped. Each failure is the alert RFC 8446 6.2 names for it:

| what is wrong                                           | alert                   |
|---------------------------------------------------------|-------------------------|
| empty Certificate message                               | certificate_required    |
| DER that does not parse, bad signature in the chain,    | bad_certificate         |
| leaf that is a CA, key usage / EKU that forbid client   |                         |
| authentication, an issuer that is not a CA              |                         |
| leaf key not ECDSA P-256, unknown critical extension    | unsupported_certificate |
| any certificate (anchor included) outside its validity  | certificate_expired     |
| chain that does not end at the configured anchor        | unknown_ca              |
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from firmware.tls13.alerts import (
    BadCertificate,
    CertificateExpired,
    CertificateRequired,
    UnknownCa,
    UnsupportedCertificate,
)

_UNDERSTOOD_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)


def _extension(cert: x509.Certificate, ext_type: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def _check_common(cert: x509.Certificate, now: datetime.datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateExpired(f"{what} is outside its validity period")
    for extension in cert.extensions:
        if extension.critical and extension.oid not in _UNDERSTOOD_CRITICAL:
            raise UnsupportedCertificate(f"{what} has an unknown critical extension")


def _check_leaf(leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UnsupportedCertificate("client key is not ECDSA P-256")
    constraints = _extension(leaf, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise BadCertificate("client certificate is a CA certificate")
    usage = _extension(leaf, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.digital_signature:
        raise BadCertificate("client certificate key usage forbids digitalSignature")
    purposes = _extension(leaf, x509.ExtendedKeyUsage)
    if isinstance(purposes, x509.ExtendedKeyUsage) and not (
        ExtendedKeyUsageOID.CLIENT_AUTH in purposes
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in purposes
    ):
        raise BadCertificate("client certificate is not for TLS client authentication")


def _check_issuer(issuer: x509.Certificate, below: int, what: str) -> None:
    constraints = _extension(issuer, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise BadCertificate(f"{what} is not a CA certificate")
    if constraints.path_length is not None and below > constraints.path_length:
        raise BadCertificate(f"{what} path length constraint exceeded")
    usage = _extension(issuer, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise BadCertificate(f"{what} key usage forbids keyCertSign")


def verify_client_chain(
    chain: list[bytes], anchor: x509.Certificate, now: float
) -> x509.Certificate:
    """Return the verified leaf of *chain* (DER, leaf first) or raise the alert to send."""
    if not chain:
        raise CertificateRequired("the client sent no certificate")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
        while len(certs) > 1 and certs[-1] == anchor:
            certs.pop()
        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        _check_common(anchor, when, "the trust anchor")
        _check_leaf(certs[0])
        for index, cert in enumerate(certs):
            what = "client certificate" if index == 0 else f"chain certificate {index}"
            _check_common(cert, when, what)
            last = index + 1 == len(certs)
            issuer = anchor if last else certs[index + 1]
            if last and cert.issuer != anchor.subject:
                raise UnknownCa("chain does not end at the trusted CA")
            _check_issuer(issuer, index, "the trust anchor" if last else f"issuer of {what}")
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                raise BadCertificate(f"signature on {what} does not verify") from None
    except ValueError:  # DER or an extension that does not parse
        raise BadCertificate("certificate does not parse") from None
    except UnsupportedAlgorithm:
        raise UnsupportedCertificate("certificate uses an unsupported algorithm") from None
    return certs[0]
