"""The server's side of the handshake as functions: negotiate, build, verify.

``Tls13Server`` sequences these; they hold no state of their own. The profile
is fixed: TLS 1.3 only, TLS_AES_128_GCM_SHA256, ECDHE on secp256r1,
ecdsa_secp256r1_sha256 signatures, mandatory client certificates.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.tls13 import auth_messages as am
from firmware.tls13.alerts import (
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    MissingExtension,
    ProtocolVersion,
)
from firmware.tls13.key_schedule import (
    KeySchedule,
    Transcript,
    certificate_verify_content,
    finished_verify_data,
)
from firmware.tls13.messages import (
    AES_128_GCM_SHA256,
    ECDSA_SECP256R1_SHA256,
    HRR_RANDOM,
    SECP256R1,
    TLS13,
    ClientHello,
    HandshakeType,
    KeyShareEntry,
    ServerHello,
    push_server_hello,
)
from firmware.tls13.wire import handshake_message

Rng = Callable[[int], bytes]
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class ServerCredentials:
    chain: list[bytes] = field(repr=False)  # DER, the server's certificate first
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    anchor: x509.Certificate = field(repr=False)


def make_credentials(
    chain: list[x509.Certificate],
    private_key: ec.EllipticCurvePrivateKey,
    anchor: x509.Certificate,
) -> ServerCredentials:
    """Check the local configuration; a mistake here is ours, so ``ValueError``."""
    if not chain:
        raise ValueError("certificate_chain is empty")
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise ValueError("private_key must be an ECDSA P-256 key")
    fmt = serialization.PublicFormat.UncompressedPoint
    ours = private_key.public_key().public_bytes(serialization.Encoding.X962, fmt)
    leaf_key = chain[0].public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or not hmac.compare_digest(
        leaf_key.public_bytes(serialization.Encoding.X962, fmt), ours
    ):
        raise ValueError("certificate_chain[0] does not hold private_key's public key")
    der = [cert.public_bytes(serialization.Encoding.DER) for cert in chain]
    return ServerCredentials(der, private_key, anchor)


def read_offer(hello: ClientHello) -> KeyShareEntry | None:
    """The client's P-256 key share, or None when a HelloRetryRequest must ask for one."""
    if hello.supported_versions is None or TLS13 not in hello.supported_versions:
        raise ProtocolVersion("client does not offer TLS 1.3")
    if hello.legacy_compression_methods != b"\x00":
        raise IllegalParameter("TLS 1.3 ClientHello with compression methods")
    if AES_128_GCM_SHA256 not in hello.cipher_suites:
        raise HandshakeFailure("client does not offer TLS_AES_128_GCM_SHA256")
    if hello.signature_algorithms is None:
        raise MissingExtension("ClientHello without signature_algorithms")
    if ECDSA_SECP256R1_SHA256 not in hello.signature_algorithms:
        raise HandshakeFailure("client does not accept ecdsa_secp256r1_sha256")
    if hello.supported_groups is None or hello.key_shares is None:
        raise MissingExtension("ClientHello without supported_groups and key_share")
    if SECP256R1 not in hello.supported_groups:
        raise HandshakeFailure("client does not support secp256r1")
    for share in hello.key_shares:
        if share.group == SECP256R1:
            return share
    return None


def check_retried_hello(first: ClientHello, second: ClientHello) -> KeyShareEntry:
    """ClientHello2 must answer the HelloRetryRequest (RFC 8446 4.1.2)."""
    if second.legacy_session_id != first.legacy_session_id:
        raise IllegalParameter("ClientHello2 changed legacy_session_id")
    share = read_offer(second)
    if share is None or second.key_shares is None or len(second.key_shares) != 1:
        raise IllegalParameter("ClientHello2 must carry exactly one secp256r1 key share")
    return share


def client_public_key(share: KeyShareEntry) -> ec.EllipticCurvePublicKey:
    data = share.key_exchange
    if len(data) != 65 or data[0] != 4:
        raise IllegalParameter("secp256r1 key share is not an uncompressed point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        raise IllegalParameter("secp256r1 key share is not on the curve") from None


def ephemeral_key(rng: Rng) -> ec.EllipticCurvePrivateKey:
    """An ECDHE key from the injected randomness (40 bytes: reduction bias < 2^-64)."""
    scalar = int.from_bytes(rng(40), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def hello_retry_request(hello: ClientHello) -> bytes:
    retry = ServerHello(
        HRR_RANDOM, hello.legacy_session_id, AES_128_GCM_SHA256, selected_group=SECP256R1
    )
    return handshake_message(HandshakeType.SERVER_HELLO, push_server_hello(retry))


def server_hello(hello: ClientHello, rng: Rng, key: ec.EllipticCurvePrivateKey) -> bytes:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    reply = ServerHello(
        rng(32), hello.legacy_session_id, AES_128_GCM_SHA256, KeyShareEntry(SECP256R1, point)
    )
    return handshake_message(HandshakeType.SERVER_HELLO, push_server_hello(reply))


def _sign(key: ec.EllipticCurvePrivateKey, content: bytes) -> bytes:
    try:  # RFC 6979 keeps a handshake with an injected rng reproducible
        return key.sign(content, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except UnsupportedAlgorithm:
        return key.sign(content, ec.ECDSA(hashes.SHA256()))


def server_flight(
    credentials: ServerCredentials, transcript: Transcript, schedule: KeySchedule
) -> bytes:
    """EncryptedExtensions .. Finished, added to *transcript* as they are built."""
    anchor_name = credentials.anchor.subject.public_bytes()
    bodies: list[tuple[HandshakeType, bytes]] = [
        (
            HandshakeType.ENCRYPTED_EXTENSIONS,
            am.push_encrypted_extensions(am.EncryptedExtensions()),
        ),
        (
            HandshakeType.CERTIFICATE_REQUEST,
            am.push_certificate_request(
                am.CertificateRequest(b"", [ECDSA_SECP256R1_SHA256], [anchor_name])
            ),
        ),
        (HandshakeType.CERTIFICATE, am.push_certificate(am.Certificate(b"", credentials.chain))),
    ]
    flight = bytearray()
    for msg_type, body in bodies:
        message = handshake_message(msg_type, body)
        transcript.add(message)
        flight += message
    content = certificate_verify_content(transcript.digest(), server=True)
    verify = am.CertificateVerify(ECDSA_SECP256R1_SHA256, _sign(credentials.private_key, content))
    message = handshake_message(
        HandshakeType.CERTIFICATE_VERIFY, am.push_certificate_verify(verify)
    )
    transcript.add(message)
    flight += message
    verify_data = finished_verify_data(schedule.server_handshake, transcript.digest())
    message = handshake_message(HandshakeType.FINISHED, verify_data)
    transcript.add(message)
    return bytes(flight + message)


def verify_client_signature(
    leaf: x509.Certificate, verify: am.CertificateVerify, transcript_hash: bytes
) -> None:
    if verify.algorithm != ECDSA_SECP256R1_SHA256:
        raise IllegalParameter("client signed with an algorithm the server did not request")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise IllegalParameter("client key is not an EC key")
    content = certificate_verify_content(transcript_hash, server=False)
    try:
        key.verify(verify.signature, content, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise DecryptError("client CertificateVerify signature does not verify") from None


def verify_client_finished(
    schedule: KeySchedule, finished: am.Finished, transcript_hash: bytes
) -> None:
    expected = finished_verify_data(schedule.client_handshake, transcript_hash)
    if not hmac.compare_digest(expected, finished.verify_data):
        raise DecryptError("client Finished does not verify")
