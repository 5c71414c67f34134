"""The certificate authorities and certificates of eLock (profile: ``docs/pki.md``).

This is the one module of ``elock_common`` that needs ``cryptography``; import
it explicitly (``from elock_common import pki``); ``elock_common`` does not.

Three CAs, all ECDSA P-256 with SHA-256, each signing end-entity certificates only:

- key-server CA: signs the key server's TLS client certificate (TLS#2 into the
  card, and TLS#1 to RACS where a RACS server chooses to trust this CA);
- RACS CA: signs the RACS server's certificate and RACS users' client
  certificates (subject CN = the RACS user id);
- secure-element issuer CA: signs each card's certificate, whose subject CN is
  the SEID and whose subjectAltName is the URI ``urn:elock:seid:<SEID>``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from elock_common.pki_files import (
    CertAndKey,
    PkiExistsError,
    PkiPaths,
    init_pki,
    load_certificate,
    load_private_key,
    pki_paths,
)
from elock_common.pki_profile import (
    CA_DAYS,
    LEAF_DAYS,
    SE_CERT_DAYS,
    SE_ISSUER_CA_DAYS,
    SEID_RE,
    Now,
    PkiError,
    as_datetime,
    issue_se_certificate,
    issue_tls_certificate,
    key_server_uri,
    make_ca,
    racs_user_uri,
    seid_uri,
)

__all__ = [
    "CA_DAYS",
    "LEAF_DAYS",
    "SEID_RE",
    "SE_CERT_DAYS",
    "SE_ISSUER_CA_DAYS",
    "CertAndKey",
    "ExpiredCertificateError",
    "KeyUsageError",
    "PkiError",
    "PkiExistsError",
    "PkiPaths",
    "SeCertificateError",
    "SelfSignedError",
    "UnsupportedKeyError",
    "WrongIssuerError",
    "WrongSeidError",
    "init_pki",
    "issue_se_certificate",
    "issue_tls_certificate",
    "key_server_uri",
    "load_certificate",
    "load_private_key",
    "make_ca",
    "pki_paths",
    "racs_user_uri",
    "seid_uri",
    "verify_se_certificate",
]


class SeCertificateError(PkiError):
    """A card certificate fails ``verify_se_certificate``; ``reason`` says why."""

    reason = "card certificate refused"


class SelfSignedError(SeCertificateError):
    reason = "self-signed"


class WrongIssuerError(SeCertificateError):
    reason = "not issued by the secure-element issuer CA"


class WrongSeidError(SeCertificateError):
    reason = "names another SEID"


class ExpiredCertificateError(SeCertificateError):
    reason = "outside its validity period"


class KeyUsageError(SeCertificateError):
    reason = "key usage does not allow a TLS server signature"


class UnsupportedKeyError(SeCertificateError):
    reason = "key is not ECDSA P-256"


def _ext(cert: x509.Certificate, ext_type: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_se_certificate(
    cert: x509.Certificate, issuer_cert: x509.Certificate, expected_seid: str, now: Now
) -> None:
    """Raise a ``SeCertificateError`` subclass unless *cert* is the card *expected_seid*'s."""
    if cert.issuer == cert.subject and _signed_by(cert, cert):
        raise SelfSignedError(SelfSignedError.reason)
    issuer_ca = _ext(issuer_cert, x509.BasicConstraints)
    if not (
        isinstance(issuer_ca, x509.BasicConstraints)
        and issuer_ca.ca
        and _signed_by(cert, issuer_cert)
    ):
        raise WrongIssuerError(WrongIssuerError.reason)
    when = as_datetime(now)
    for what, checked in (("card certificate", cert), ("issuer CA", issuer_cert)):
        if not checked.not_valid_before_utc <= when <= checked.not_valid_after_utc:
            raise ExpiredCertificateError(f"{what} is outside its validity period")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UnsupportedKeyError(UnsupportedKeyError.reason)
    constraints, usage = _ext(cert, x509.BasicConstraints), _ext(cert, x509.KeyUsage)
    purposes = _ext(cert, x509.ExtendedKeyUsage)
    if (
        (isinstance(constraints, x509.BasicConstraints) and constraints.ca)
        or not isinstance(usage, x509.KeyUsage)
        or not usage.digital_signature
        or (
            isinstance(purposes, x509.ExtendedKeyUsage)
            and ExtendedKeyUsageOID.SERVER_AUTH not in purposes
        )
    ):
        raise KeyUsageError(KeyUsageError.reason)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    san = _ext(cert, x509.SubjectAlternativeName)
    uris = (
        san.get_values_for_type(x509.UniformResourceIdentifier)
        if isinstance(san, x509.SubjectAlternativeName)
        else []
    )
    if [n.value for n in names] != [expected_seid] or uris != [seid_uri(expected_seid)]:
        raise WrongSeidError(f"card certificate does not name SEID {expected_seid!r}")
