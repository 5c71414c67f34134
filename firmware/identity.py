"""The card's identity for TLS#2: its P-256 key, its certificate, the key-server trust anchor.

Personalization (``elock-se personalize --seid ...``) calls ``generate_key`` on
the card's store: the private key is made here and written to the store; only
the public key comes out, for the secure-element issuer CA to certify with the
SEID as CN (``elock_common.pki.issue_se_certificate``). ``install_certificate``
then stores that certificate, after checking it holds this card's key, and the
key-server CA that TLS#2 client certificates must chain to. A Java Card port
does the same with GENERATE ASYMMETRIC KEY PAIR before issuance.

Once a trust anchor is stored the card provisions containers only through
TLS#2: the sealed PUT / DELETE CONTAINER answer 6985 (``personalization.py``).

GET DATA ``00 CA 7F 21 Le`` returns the certificate (DER), so a key server
can check it against the issuer CA and the SEID it asked RACS for before it
sends anything; 6A88 on a card without one. The private key never leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.apdu import ApduCommand
from firmware.dispatch import Route, route
from firmware.errors import IncorrectP1P2Error, ReferencedDataNotFoundError, WrongLengthError
from firmware.store import Store

CELL_KEY = "id.key"  # the private scalar, 32 bytes
CELL_CERTIFICATE = "id.cert"  # DER
CELL_ANCHOR = "id.anchor"  # DER of the key-server CA
CLA_GET_DATA = 0x00
INS_GET_DATA = 0xCA
P1P2_CERTIFICATE = 0x7F21  # ISO 7816-6 "certificate" data object
SCALAR_BYTES = 32


class IdentityError(Exception):
    """Personalization misuse: a key already made, a certificate for another key."""


def _public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_key(store: Store) -> ec.EllipticCurvePrivateKey | None:
    raw = store.get(CELL_KEY)
    if raw is None:
        return None
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def generate_key(store: Store) -> ec.EllipticCurvePublicKey:
    """Make the card's key pair in the store; return the public key only."""
    if store.get(CELL_KEY) is not None:
        raise IdentityError("the card has a key pair already")
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(SCALAR_BYTES, "big")
    with store.transaction() as tx:
        tx.put(CELL_KEY, scalar)
    return key.public_key()


def install_certificate(
    store: Store, certificate: x509.Certificate, key_server_ca: x509.Certificate
) -> None:
    """Store the card's certificate and the TLS#2 trust anchor, in one transaction."""
    key = _private_key(store)
    if key is None:
        raise IdentityError("generate the card's key pair first")
    cert_key = certificate.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or _public_der(cert_key) != _public_der(
        key.public_key()
    ):
        raise IdentityError("the certificate does not hold this card's public key")
    with store.transaction() as tx:
        tx.put(CELL_CERTIFICATE, certificate.public_bytes(serialization.Encoding.DER))
        tx.put(CELL_ANCHOR, key_server_ca.public_bytes(serialization.Encoding.DER))


def has_trust_anchor(store: Store) -> bool:
    return store.get(CELL_ANCHOR) is not None


@dataclass(frozen=True)
class CardIdentity:
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    trust_anchor: x509.Certificate

    def __repr__(self) -> str:
        return f"CardIdentity({self.certificate.subject.rfc4514_string()!r}, <key hidden>)"

    @classmethod
    def load(cls, store: Store) -> CardIdentity | None:
        """The identity, or None on a card personalized without one."""
        key = _private_key(store)
        cert, anchor = store.get(CELL_CERTIFICATE), store.get(CELL_ANCHOR)
        if key is None or cert is None or anchor is None:
            return None
        load = x509.load_der_x509_certificate
        return cls(key, load(cert), load(anchor))


class CertificateCommand:
    """GET DATA of the card certificate (public)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def handle_get_certificate(self, cmd: ApduCommand) -> bytes:
        if cmd.p1p2 != P1P2_CERTIFICATE:
            raise IncorrectP1P2Error("GET DATA supports P1 P2 7F 21 (the card certificate)")
        if cmd.data:
            raise WrongLengthError("GET DATA takes no data")
        cert = self.store.get(CELL_CERTIFICATE)
        if cert is None:
            raise ReferencedDataNotFoundError("the card has no certificate")
        return cert

    def routes(self) -> list[Route]:
        return [
            route(CLA_GET_DATA, INS_GET_DATA, "GET DATA", self.handle_get_certificate,
                  (0x6A86, 0x6A88), "docs/apdu.md#get-data, ISO 7816-4 11.4.3"),
        ]  # fmt: skip
