"""What the card's TLS server refuses, and with which alert.

Each case either drives OpenSSL (``ssl``) into the refusal or hand-builds the
offending ClientHello; the server must end with one ``ConnectionClosed``
carrying the RFC 8446 alert, queue that alert for the peer, and raise nothing.
"""

from __future__ import annotations

import dataclasses
import ssl
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from elock_common import pki
from firmware.tls13 import AlertDescription, ConnectionClosed, ServerState, Tls13Server
from firmware.tls13.messages import (
    AES_128_GCM_SHA256,
    ECDSA_SECP256R1_SHA256,
    SECP256R1,
    TLS13,
    ClientHello,
    HandshakeType,
    KeyShareEntry,
    push_client_hello,
)
from firmware.tls13.records import ContentType, plaintext_record
from firmware.tls13.wire import handshake_message
from tests.firmware.tls_fixtures import CardPki
from tests.firmware.tls_peer import SslClient, client_context

X25519 = 0x001D
# RFC 8446 4.1.3, as printed there (not computed): the HelloRetryRequest random.
HRR_RANDOM_RFC8446 = bytes.fromhex(
    "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C"
)
A = AlertDescription


def failed_with(
    server: Tls13Server, alert: AlertDescription, client: SslClient | None = None
) -> ConnectionClosed:
    events = client.events if client else list(iter(server.next_event, None))
    assert server.state is ServerState.FAILED
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.alert is alert, closed
    assert not closed.by_peer
    return closed


def issue_client(
    card_pki: CardPki,
    *,
    days: int = 30,
    now: float | None = None,
    server_eku: bool = False,
    issuer: str = "key-server",
) -> tuple[str, str]:
    """A key-server-like client certificate, written as PEM files for ``ssl``."""
    if issuer == "key-server":
        ca_cert = pki.load_certificate(card_pki.paths.key_server_ca.cert)
        ca_key = pki.load_private_key(card_pki.paths.key_server_ca.key)
    else:
        ca_cert, ca_key = pki.make_ca("someone else's CA", now=time.time())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_tls_certificate(
        ca_cert,
        ca_key,
        key.public_key(),
        "client",
        now=now or time.time(),
        days=days,
        client=not server_eku,
        server=server_eku,
    )
    stem = f"client-{issuer}-{days}-{now}-{server_eku}"
    cert_path = card_pki.write_pem(f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
    key_path = card_pki.write_pem(
        f"{stem}.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return str(cert_path), str(key_path)  # fmt: skip


def run_ssl(card_pki: CardPki, server: Tls13Server, **context_args: object) -> SslClient:
    client = SslClient(client_context(card_pki, **context_args), server)  # type: ignore[arg-type]
    client.handshake()
    client.tls.write(b"x")  # TLS 1.3: the client learns of a refusal on its next read
    client.flush()
    return client


def test_no_client_certificate(card_pki: CardPki) -> None:
    server = card_pki.server()
    client = run_ssl(card_pki, server, certificate=False)
    failed_with(server, A.CERTIFICATE_REQUIRED, client)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        client.tls.read(1)


@pytest.mark.parametrize(
    ("make", "alert"),
    [
        (lambda p: issue_client(p, issuer="other"), A.UNKNOWN_CA),
        (lambda p: issue_client(p, now=time.time() - 10 * 86400, days=1), A.CERTIFICATE_EXPIRED),
        (lambda p: issue_client(p, now=time.time() + 86400), A.CERTIFICATE_EXPIRED),
        (lambda p: issue_client(p, server_eku=True), A.BAD_CERTIFICATE),
    ],
    ids=["untrusted", "expired", "not-yet-valid", "server-only-eku"],
)
def test_refused_client_certificates(card_pki: CardPki, make: object, alert: A) -> None:
    server = card_pki.server()
    client = run_ssl(card_pki, server, certificate=make(card_pki))  # type: ignore[operator]
    failed_with(server, alert, client)
    with pytest.raises(ssl.SSLError):
        client.tls.read(1)


def test_trust_anchor_past_its_life(card_pki: CardPki) -> None:
    server = card_pki.server(now=time.time() + 20 * 365 * 86400)
    failed_with(server, A.CERTIFICATE_EXPIRED, run_ssl(card_pki, server))


def test_tls12_only_client(card_pki: CardPki) -> None:
    ctx = client_context(card_pki)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server = card_pki.server()
    client = SslClient(ctx, server)
    client.handshake()
    failed_with(server, A.PROTOCOL_VERSION, client)
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        client.tls.do_handshake()


def test_a_bit_flipped_in_the_client_flight(card_pki: CardPki) -> None:
    server = card_pki.server()
    client = SslClient(client_context(card_pki, p256_only=True), server)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.do_handshake()
    client.flush()
    client.tls.do_handshake()  # the client's Certificate .. Finished, encrypted
    client.flush(mutate=lambda data: data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:])
    failed_with(server, A.BAD_RECORD_MAC, client)


def hello(**changes: object) -> ClientHello:
    share = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    base = ClientHello(
        random=bytes(32),
        legacy_session_id=bytes(32),
        cipher_suites=[0x1302, AES_128_GCM_SHA256],
        supported_versions=[TLS13],
        supported_groups=[X25519, SECP256R1],
        signature_algorithms=[0x0804, ECDSA_SECP256R1_SHA256],
        key_shares=[KeyShareEntry(SECP256R1, share)],
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def hello_record(msg: ClientHello) -> bytes:
    body = handshake_message(HandshakeType.CLIENT_HELLO, push_client_hello(msg))
    return plaintext_record(ContentType.HANDSHAKE, body)


def test_a_hand_built_hello_is_accepted(card_pki: CardPki) -> None:
    server = card_pki.server()
    server.receive(hello_record(hello()))
    assert server.state is ServerState.EXPECT_CLIENT_CERTIFICATE
    out = server.data_to_send()
    assert out[:1] == b"\x16" and b"\x14\x03\x03\x00\x01\x01" in out  # ServerHello, then CCS


@pytest.mark.parametrize(
    ("changes", "alert"),
    [
        ({"supported_versions": None}, A.PROTOCOL_VERSION),
        ({"supported_versions": [0x0303]}, A.PROTOCOL_VERSION),
        ({"cipher_suites": [0x1302, 0x1303]}, A.HANDSHAKE_FAILURE),
        ({"signature_algorithms": None}, A.MISSING_EXTENSION),
        ({"signature_algorithms": [0x0804]}, A.HANDSHAKE_FAILURE),
        ({"supported_groups": None}, A.MISSING_EXTENSION),
        ({"key_shares": None}, A.MISSING_EXTENSION),
        ({"supported_groups": [X25519]}, A.HANDSHAKE_FAILURE),
        ({"legacy_compression_methods": b"\x01\x00"}, A.ILLEGAL_PARAMETER),
        ({"key_shares": [KeyShareEntry(SECP256R1, b"\x04" + bytes(64))]}, A.ILLEGAL_PARAMETER),
        ({"key_shares": [KeyShareEntry(SECP256R1, b"\x02" + bytes(32))]}, A.ILLEGAL_PARAMETER),
        ({"other_extensions": [(0, b""), (0, b"")]}, A.ILLEGAL_PARAMETER),
        ({"legacy_session_id": bytes(33)}, A.DECODE_ERROR),
    ],
)
def test_hello_refusals(card_pki: CardPki, changes: dict[str, object], alert: A) -> None:
    server = card_pki.server()
    server.receive(hello_record(hello(**changes)))
    failed_with(server, alert)
    assert server.data_to_send() == plaintext_record(ContentType.ALERT, bytes([2, alert]))


def test_retried_hello_must_bring_p256(card_pki: CardPki) -> None:
    server = card_pki.server()
    server.receive(hello_record(hello(key_shares=[KeyShareEntry(X25519, bytes(32))])))
    assert server.state is ServerState.EXPECT_RETRIED_CLIENT_HELLO
    retry = server.data_to_send()
    assert HRR_RANDOM_RFC8446 in retry
    server.receive(hello_record(hello(key_shares=[KeyShareEntry(X25519, bytes(32))])))
    failed_with(server, A.ILLEGAL_PARAMETER)


def test_retried_hello_must_keep_its_session_id(card_pki: CardPki) -> None:
    server = card_pki.server()
    server.receive(hello_record(hello(key_shares=[])))
    server.receive(hello_record(hello(legacy_session_id=b"\x01" * 32)))
    failed_with(server, A.ILLEGAL_PARAMETER)


@pytest.mark.parametrize(
    ("data", "alert"),
    [
        (b"\x14\x03\x03\x00\x01\x01", A.UNEXPECTED_MESSAGE),  # CCS before any ClientHello
        (b"\x17\x03\x03\x00\x05hello", A.UNEXPECTED_MESSAGE),  # data before the handshake
        (b"\x16\x03\x01\x40\x01", A.RECORD_OVERFLOW),  # 2^14 + 1 bytes announced
        (b"\x17\x03\x03\x41\x01", A.RECORD_OVERFLOW),  # 2^14 + 257
        (b"\x18\x03\x03\x00\x01\x00", A.UNEXPECTED_MESSAGE),  # unknown content type
        (b"\x16\x02\x00\x00\x01\x00", A.DECODE_ERROR),  # not a 3.x record
        (b"\x16\x03\x01\x00\x00", A.UNEXPECTED_MESSAGE),  # empty handshake fragment
        (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", A.DECODE_ERROR),  # truncated hello
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", A.UNEXPECTED_MESSAGE),  # a ServerHello
        (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", A.ILLEGAL_PARAMETER),  # 64 KiB message
        (b"\x15\x03\x03\x00\x03\x02\x28\x00", A.DECODE_ERROR),  # a 3-byte alert
    ],
)
def test_record_layer_refusals(card_pki: CardPki, data: bytes, alert: A) -> None:
    server = card_pki.server()
    server.receive(data)
    failed_with(server, alert)


def test_peer_alert_ends_the_connection(card_pki: CardPki) -> None:
    server = card_pki.server()
    server.receive(b"\x15\x03\x03\x00\x02\x01\x5a")  # user_canceled: a warning, ignored
    assert server.state is ServerState.EXPECT_CLIENT_HELLO
    server.receive(b"\x15\x03\x03\x00\x02\x02\x28")  # handshake_failure
    assert server.state is ServerState.FAILED
    assert list(iter(server.next_event, None)) == [
        ConnectionClosed(A.HANDSHAKE_FAILURE, "alert from peer", by_peer=True)
    ]
    assert server.data_to_send() == b""  # no alert answers an alert
    server.receive(b"\x16\x03\x01\x00\x01\x01")  # after the end: ignored
    assert server.next_event() is None
