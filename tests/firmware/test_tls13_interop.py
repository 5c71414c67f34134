"""The TLS 1.3 server against OpenSSL through Python's ``ssl`` over memory BIOs.

This is TLS#2 as the key server will run it: ``ssl`` (OpenSSL 3, a stack we
did not write) as the client with the key server's certificate, our server as
the card. OpenSSL offers X25519 first, so the default path needs a
HelloRetryRequest; ``set_ecdh_curve("prime256v1")`` gives the direct path.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from elock_common import pki
from firmware.tls13 import (
    AlertDescription,
    ApplicationData,
    ConnectionClosed,
    HandshakeCompleted,
    ServerState,
    Tls13Server,
    TlsUsageError,
)
from tests.firmware.tls_fixtures import SEID, CardPki
from tests.firmware.tls_peer import SslClient, client_context


def connect(card_pki: CardPki, *, p256_only: bool = False, max_record: int = 2**14) -> SslClient:
    server = card_pki.server(max_record=max_record)
    client = SslClient(client_context(card_pki, p256_only=p256_only), server)
    client.handshake()
    assert client.client_error is None
    assert server.state is ServerState.CONNECTED
    return client


@pytest.mark.parametrize("p256_only", [False, True], ids=["hello-retry", "direct"])
def test_handshake_completes(card_pki: CardPki, p256_only: bool) -> None:
    client = connect(card_pki, p256_only=p256_only)
    completed = client.events[0]
    assert isinstance(completed, HandshakeCompleted)
    assert completed.retried is not p256_only
    cn = completed.peer_certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert cn[0].value == "keyserver"
    assert client.tls.version() == "TLSv1.3"
    assert client.tls.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    # The key server names the card by SEID, not by host name.
    der = client.tls.getpeercert(binary_form=True)
    assert der is not None
    pki.verify_se_certificate(
        x509.load_der_x509_certificate(der), card_pki.se_issuer_ca, SEID, time.time()
    )


def test_state_after_every_flight(card_pki: CardPki) -> None:
    server = card_pki.server()
    client = SslClient(client_context(card_pki), server)
    seen = []
    for _ in range(4):
        try:
            client.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        client.flush()
        seen.append(server.state)
    assert seen == [
        ServerState.EXPECT_RETRIED_CLIENT_HELLO,
        ServerState.EXPECT_CLIENT_CERTIFICATE,
        ServerState.CONNECTED,
        ServerState.CONNECTED,
    ]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_records_in_any_split(card_pki: CardPki, chunk: int) -> None:
    server = card_pki.server()
    client = SslClient(client_context(card_pki), server)
    client.handshake(chunk=chunk)
    assert server.state is ServerState.CONNECTED
    client.tls.write(b"split me")
    data = client.outgoing.read()
    for i in range(0, len(data), chunk):
        server.receive(data[i : i + chunk])
    assert [e for e in iter(server.next_event, None)] == [ApplicationData(b"split me")]


@pytest.mark.parametrize("max_record", [2**14, 256])
def test_application_data_both_ways(card_pki: CardPki, max_record: int) -> None:
    client = connect(card_pki, max_record=max_record)
    payload = random.Random(1).randbytes(40_000)  # several records each way
    client.send(payload)
    received = b"".join(e.data for e in client.events if isinstance(e, ApplicationData))
    assert received == payload
    client.server.send_application_data(payload[::-1])
    sent = client.server.data_to_send()
    client.incoming.write(sent)
    assert client.read_all() == payload[::-1]
    assert len(sent) >= len(payload) + (len(payload) // max_record) * 22


def test_close_notify_from_the_client(card_pki: CardPki) -> None:
    client = connect(card_pki)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()  # sends close_notify, waits for ours
    client.flush()
    assert client.server.state is ServerState.CLOSED
    closed = client.events[-1]
    assert closed == ConnectionClosed(AlertDescription.CLOSE_NOTIFY, "closed by peer", True)
    client.tls.unwrap()  # our close_notify arrived: a clean bidirectional shutdown


def test_close_notify_from_the_server(card_pki: CardPki) -> None:
    client = connect(card_pki)
    client.server.close()
    client.incoming.write(client.server.data_to_send())
    assert client.tls.read(10) == b""  # CPython's answer to a received close_notify
    client.tls.unwrap()  # ours arrived, theirs goes out: a clean shutdown
    client.server.close()  # idempotent
    assert client.server.data_to_send() == b""
    with pytest.raises(TlsUsageError):
        client.server.send_application_data(b"too late")


def test_misuse_is_a_usage_error(card_pki: CardPki) -> None:
    server = card_pki.server()
    with pytest.raises(TlsUsageError):
        server.send_application_data(b"before the handshake")
    other_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="does not hold"):
        Tls13Server(
            certificate_chain=[card_pki.card_cert],
            private_key=other_key,
            client_trust_anchor=card_pki.key_server_ca,
            now=time.time(),
        )
    with pytest.raises(ValueError, match="max_record"):
        card_pki.server(max_record=2**14 + 1)


def test_same_rng_same_bytes(card_pki: CardPki) -> None:
    """With the randomness injected (and RFC 6979 signatures) a flight is reproducible."""
    server = card_pki.server()
    client = SslClient(client_context(card_pki, p256_only=True), server)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.do_handshake()
    hello = client.outgoing.read()
    flights = []
    for _ in range(2):
        seeded = random.Random(7)
        twin = card_pki.server(rng=seeded.randbytes)
        twin.receive(hello)
        flights.append(twin.data_to_send())
    assert flights[0] == flights[1]
    assert len(flights[0]) > 500


def test_no_secret_in_repr_events_or_logs(
    card_pki: CardPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keylog = tmp_path / "keys.log"
    server = card_pki.server()
    client = SslClient(client_context(card_pki, keylog=keylog), server)
    client.handshake()
    client.send(b"secret-psk-0123456789")
    client.send(b"\x17\x03\x03\x00\x20" + bytes(32))  # garbage: the connection fails
    lines = [line.split() for line in keylog.read_text().splitlines()]
    secrets = [words[-1] for words in lines if len(words) == 3]  # "# TLS secrets log..." is 4+
    assert len(secrets) == 5  # two handshake, two application traffic secrets, exporter
    scalar = f"{card_pki.card_key.private_numbers().private_value:064x}"
    shown = " ".join(
        [repr(server), caplog.text, *map(repr, client.events), *map(str, client.events)]
    )
    shown += repr(vars(server))
    for secret in [*secrets, scalar]:
        assert secret.lower() not in shown.lower()
    assert "secret-psk" not in shown
