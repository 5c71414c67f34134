"""Loss: drop chosen datagrams, drive the timers, and the Open still completes.

Every retransmitted flight must use fresh record sequence numbers (RFC 6347
4.2.4: a retransmission is a new record, and the peer's replay window would
drop a copy). In memory against tinydtls on a virtual clock, and over real UDP
against libcoap's OpenSSL and GnuTLS servers on the real clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware.coap_open import FailureKind, OpenFailed, OpenResult, OpenSession
from firmware.dtls.client import ConnectionTerminated, DtlsClient, HandshakeCompleted
from tests.conftest import require_tool
from tests.firmware.peers import (
    CoapResponder,
    HostRun,
    LibcoapServer,
    TinyDtlsServer,
    drop_first,
    libcoap_server,
    record_headers,
    run_in_memory,
    run_udp,
)

IDENTITY = b"card-key-0001"
PSK = b"c2VjcmV0LXBzay0x"


def assert_fresh_sequence_numbers(run: HostRun) -> None:
    """No (epoch, seq) is ever sent twice, and each epoch's numbers only grow."""
    seen: dict[int, int] = {}
    for datagram in run.sent:
        for _ctype, epoch, seq in record_headers(datagram):
            assert seq > seen.get(epoch, -1), f"epoch {epoch} seq {seq} reused or out of order"
            seen[epoch] = seq


# tinydtls, in memory. Datagram indices, client -> server: 0 ClientHello, 1 ClientHello
# with cookie, 2 CKE+CCS+Finished, 3 CoAP request; server -> client: 0 HelloVerifyRequest,
# 1 ServerHello, 2 ServerHelloDone, 3 CCS, 4 Finished, 5 CoAP response.
@pytest.mark.parametrize(
    ("drop_out", "drop_in", "retransmitted_flights"),
    [
        ({0}, set(), 1),  # first ClientHello
        ({0, 1}, set(), 2),  # ... and its first retransmission
        (set(), {0}, 1),  # HelloVerifyRequest
        ({1}, set(), 1),  # ClientHello with the cookie
        (set(), {1, 2}, 1),  # the whole ServerHello flight
        (set(), {2}, 1),  # only ServerHelloDone: tinydtls answers with a *new* ServerHello
        ({2}, set(), 1),  # our CKE+CCS+Finished
        ({3}, set(), 1),  # the CoAP request: CoAP retransmits it
        (set(), {5}, 1),  # the CoAP response: the request is retransmitted
    ],
)
def test_open_survives_loss_against_tinydtls(
    drop_out: set[int], drop_in: set[int], retransmitted_flights: int
) -> None:
    server = TinyDtlsServer(IDENTITY, PSK, CoapResponder())
    session = OpenSession(IDENTITY, PSK, "coaps://lock/open")
    run = run_in_memory(
        session, server, next_event=session.next_event, drop_out=drop_out, drop_in=drop_in
    )
    assert run.events == [OpenResult("2.04", b"opened")]
    assert len(run.sent) == 5 + retransmitted_flights
    assert_fresh_sequence_numbers(run)


def test_retransmitted_flight_differs_only_in_record_numbers() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run = run_in_memory(client, server, next_event=client.next_event, drop_out={2})
    first, again = run.sent[2], run.sent[3]
    assert [h[:2] for h in record_headers(first)] == [(22, 0), (20, 0), (22, 1)]
    assert [h[:2] for h in record_headers(again)] == [(22, 0), (20, 0), (22, 1)]
    assert [h[2] for h in record_headers(first)] == [2, 3, 0]
    assert [h[2] for h in record_headers(again)] == [4, 5, 1]
    assert first != again  # the sealed Finished differs too: its nonce is epoch+seq


def test_tinydtls_does_not_repeat_its_last_flight() -> None:
    """A known tinydtls gap, pinned here so it is not mistaken for ours: when the server's
    CCS+Finished is lost, tinydtls ignores our repeated final flight (RFC 6347 4.2.4 says
    it must send its own again). lock_server's transport replays that flight for
    tinydtls; the same loss against OpenSSL and GnuTLS is tested below."""
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK, max_retransmissions=2)
    run = run_in_memory(client, server, next_event=client.next_event, drop_in={3, 4})
    assert run.events[-1].reason == "handshake timed out"
    assert server.connected


def _is_final_server_flight(datagram: bytes) -> bool:
    return any(ctype == 20 or epoch == 1 for ctype, epoch, _ in record_headers(datagram))


@pytest.fixture(params=["coap-server-openssl", "coap-server-gnutls"])
def server(request: pytest.FixtureRequest) -> Iterator[LibcoapServer]:
    tool = require_tool(request.param)
    with libcoap_server(tool, PSK.decode()) as running:
        yield running


@pytest.mark.peer
@pytest.mark.peer
@pytest.mark.parametrize("lost", [{1}, {2}], ids=["cookie-hello", "client-final-flight"])
def test_handshake_survives_loss_against_libcoap(server: LibcoapServer, lost: set[int]) -> None:
    client = DtlsClient(IDENTITY, PSK)
    run = run_udp(
        client,
        ("127.0.0.1", server.dtls_port),
        next_event=client.next_event,
        drop_out=lost,
        deadline=4.0,
    )
    assert run.events == [HandshakeCompleted()]
    assert len(run.sent) == 4  # the lost flight, sent again
    assert_fresh_sequence_numbers(run)


def _final_server_flight_lost(tool_name: str, client: DtlsClient, deadline: float) -> HostRun:
    """A handshake with libcoap's server (``tool_name``) whose CCS+Finished is lost once."""
    tool = require_tool(tool_name)
    lose = drop_first(1, _is_final_server_flight)
    with libcoap_server(tool, PSK.decode()) as server:
        run = run_udp(
            client,
            ("127.0.0.1", server.dtls_port),
            next_event=client.next_event,
            drop_in=lose,
            deadline=deadline,
        )
    assert lose.remaining == 0
    return run


@pytest.mark.peer
def test_lost_server_final_flight_against_openssl() -> None:
    """CCS+Finished lost: our timer repeats our final flight, OpenSSL repeats its own."""
    run = _final_server_flight_lost("coap-server-openssl", DtlsClient(IDENTITY, PSK), 4.0)
    assert run.events == [HandshakeCompleted()]
    assert len(run.sent) == 4
    assert_fresh_sequence_numbers(run)


@pytest.mark.peer
def test_gnutls_does_not_repeat_its_last_flight() -> None:
    """A peer gap, pinned so it is not mistaken for ours: libcoap 4.3.1's GnuTLS server,
    once established, discards our repeated final flight ("Discarded message due to
    invalid decryption" at -v 9) instead of repeating CCS+Finished (RFC 6347 4.2.4)."""
    client = DtlsClient(IDENTITY, PSK, max_retransmissions=1)
    run = _final_server_flight_lost("coap-server-gnutls", client, 4.5)
    assert run.events == [ConnectionTerminated("handshake timed out", None, from_peer=False)]


@pytest.mark.peer
def test_open_survives_a_lost_request_against_libcoap(server: LibcoapServer) -> None:
    session = OpenSession(IDENTITY, PSK, f"coaps://127.0.0.1:{server.dtls_port}/time", method="GET")
    run = run_udp(
        session,
        ("127.0.0.1", server.dtls_port),
        next_event=session.next_event,
        drop_out={3},
        deadline=4.5,
    )
    (event,) = run.events
    assert isinstance(event, OpenResult) and event.code == "2.05", event
    assert_fresh_sequence_numbers(run)


def test_total_loss_ends_in_a_timeout_failure() -> None:
    server = TinyDtlsServer(IDENTITY, PSK, CoapResponder())
    session = OpenSession(IDENTITY, PSK, "coaps://lock/open", max_retransmissions=3)
    run = run_in_memory(
        session, server, next_event=session.next_event, drop_out=lambda index, datagram: True
    )
    assert run.events == [
        OpenFailed("handshake failed: handshake timed out", None, FailureKind.TIMEOUT)
    ]
    assert len(run.sent) == 4
    assert_fresh_sequence_numbers(run)
