"""Interop with tinydtls (the lock's DTLS stack, via DTLSSocket), entirely in memory.

tinydtls is a DTLS server object here: datagrams are shuttled between it and our
client with no socket, on a virtual clock. This is the tinydtls proof, and the
place to debug a handshake byte by byte.
"""

from __future__ import annotations

import statistics
import time

from firmware.coap_open import OpenFailed, OpenResult, OpenSession, OpenState
from firmware.dtls.client import (
    ApplicationDataReceived,
    ConnectionTerminated,
    DtlsClient,
    DtlsState,
    HandshakeCompleted,
)
from tests.firmware.peers import CoapResponder, TinyDtlsServer, refragment, run_in_memory

IDENTITY = b"card-key-0001"
PSK = b"c2VjcmV0LXBzay0x"  # 16 base64url characters, like the lock's derived PSKs


def test_handshake_and_application_data_both_ways() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run = run_in_memory(client, server, next_event=client.next_event)

    assert run.events == [HandshakeCompleted()]
    assert client.state is DtlsState.CONNECTED
    assert server.connected
    # (1) ClientHello (2) ClientHello+cookie (3) CKE+CCS+Finished in one datagram
    assert len(run.sent) == 3

    client.send_application_data(b"hello door")
    for datagram in client.datagrams_to_send(0.0):
        server.receive(datagram)
    assert server.received == [b"hello door"]

    server.send(b"hello card")
    for datagram in server.take():
        client.receive_datagram(datagram, 0.0)
    assert client.next_event() == ApplicationDataReceived(b"hello card")


def test_replayed_application_record_is_dropped() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run_in_memory(client, server, next_event=client.next_event)
    server.send(b"once")
    (datagram,) = server.take()
    client.receive_datagram(datagram, 0.0)
    client.receive_datagram(datagram, 0.0)  # a replay: same epoch and sequence number
    assert client.next_event() == ApplicationDataReceived(b"once")
    assert client.next_event() is None


def test_close_notify_reaches_tinydtls() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run_in_memory(client, server, next_event=client.next_event)
    client.close()
    for datagram in client.datagrams_to_send(0.0):
        server.receive(datagram)
    assert client.state is DtlsState.CLOSED
    assert client.next_event() == ConnectionTerminated("closed locally", 0, from_peer=False)
    assert server.events[-1] == 0  # tinydtls reports the close_notify alert (code 0)...
    (answer,) = server.take()
    assert answer[0] == 21 and answer[3:5] == b"\x00\x01"  # ...and answers with its own, sealed


def test_wrong_psk_fails_the_handshake() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, b"not-the-right-psk", max_retransmissions=2)
    run = run_in_memory(client, server, next_event=client.next_event)
    (event,) = run.events
    assert isinstance(event, ConnectionTerminated)
    assert client.state is DtlsState.FAILED
    assert not server.connected


def test_unknown_identity_fails_the_handshake() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(b"someone-else", PSK, max_retransmissions=1)
    run = run_in_memory(client, server, next_event=client.next_event)
    assert isinstance(run.events[-1], ConnectionTerminated)
    assert not server.connected


def test_fragmented_server_flight_is_reassembled() -> None:
    """Re-fragment tinydtls's plaintext handshake records into 7-byte pieces, out of order."""
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    client.connect(0.0)
    for _ in range(2):  # ClientHello, HelloVerifyRequest, ClientHello with cookie
        for datagram in client.datagrams_to_send(0.0):
            server.receive(datagram)
        flight = server.take()
        if client.state is DtlsState.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO and len(flight) > 1:
            pieces = [p for datagram in flight for p in refragment(datagram, 7)]
            for piece in reversed(pieces):  # worst order: last fragment first
                client.receive_datagram(piece, 0.0)
        else:
            for datagram in flight:
                client.receive_datagram(datagram, 0.0)
    assert client.state is DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC
    for datagram in client.datagrams_to_send(0.0):
        server.receive(datagram)
    for datagram in server.take():
        client.receive_datagram(datagram, 0.0)
    assert client.next_event() == HandshakeCompleted()


def test_open_session_piggybacked_in_five_exchanges() -> None:
    responder = CoapResponder()
    server = TinyDtlsServer(IDENTITY, PSK, responder)
    session = OpenSession(IDENTITY, PSK, "coaps://lock.example/open", payload=b"please")
    run = run_in_memory(session, server, next_event=session.next_event)

    assert run.events == [OpenResult("2.04", b"opened")]
    assert run.exchanges == 5
    assert session.state is OpenState.DONE
    (request,) = responder.requests
    assert request.code.dotted == "0.02" and request.payload == b"please"
    assert request.opt.uri_host == "lock.example" and request.opt.uri_path == ("open",)
    assert server.received[-1:] != [] and len(server.received) == 1


def test_open_session_separate_response_is_acknowledged() -> None:
    responder = CoapResponder(separate=True)
    server = TinyDtlsServer(IDENTITY, PSK, responder)
    session = OpenSession(IDENTITY, PSK, "coaps://127.0.0.1/open")
    run = run_in_memory(session, server, next_event=session.next_event)

    assert run.events == [OpenResult("2.04", b"opened")]
    assert run.exchanges == 6  # the empty ACK costs one exchange
    assert len(server.received) == 2  # the request, then our ACK of the separate response
    (request,) = responder.requests
    assert request.opt.uri_host is None  # an IP literal needs no Uri-Host


def test_open_session_with_wrong_psk_reports_failure() -> None:
    server = TinyDtlsServer(IDENTITY, PSK, CoapResponder())
    session = OpenSession(IDENTITY, b"wrong", "coaps://lock/open", max_retransmissions=1)
    run = run_in_memory(session, server, next_event=session.next_event)
    (event,) = run.events
    assert isinstance(event, OpenFailed)
    assert event.reason.startswith("handshake failed")


def test_in_memory_open_time() -> None:
    """Median wall time of a whole Open against tinydtls in memory (reported, loosely bounded)."""
    times = []
    for _ in range(50):
        server = TinyDtlsServer(IDENTITY, PSK, CoapResponder())
        session = OpenSession(IDENTITY, PSK, "coaps://lock/open")
        start = time.perf_counter()
        run = run_in_memory(session, server, next_event=session.next_event)
        times.append(time.perf_counter() - start)
        assert isinstance(run.events[-1], OpenResult)
    median = statistics.median(times)
    print(f"in-memory Open against tinydtls: median {median * 1000:.2f} ms over 50 runs")
    assert median < 0.1
