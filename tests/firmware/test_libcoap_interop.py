"""Interop over real UDP with libcoap's example servers (OpenSSL and GnuTLS builds).

The test is the key host: it carries datagrams between ``OpenSession`` and the
server and counts exchanges (one exchange = one APDU to the card). libcoap's
example server with ``-k KEY`` accepts any PSK identity with that key.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware.coap_open import FailureKind, OpenFailed, OpenResult, OpenSession
from firmware.dtls.client import ConnectionTerminated, DtlsClient, HandshakeCompleted
from tests.conftest import require_tool
from tests.firmware.peers import LibcoapServer, libcoap_server, run_udp

IDENTITY = b"card-key-0001"
PSK = "c2VjcmV0LXBzay0x"

pytestmark = pytest.mark.peer


@pytest.fixture(params=["coap-server-openssl", "coap-server-gnutls"])
def server(request: pytest.FixtureRequest) -> Iterator[LibcoapServer]:
    tool = require_tool(request.param)
    with libcoap_server(tool, PSK) as running:
        yield running


def _uri(server: LibcoapServer, path: str) -> str:
    return f"coaps://127.0.0.1:{server.dtls_port}/{path}"


def test_get_time_in_five_exchanges(server: LibcoapServer) -> None:
    session = OpenSession(IDENTITY, PSK.encode(), _uri(server, "time"), method="GET")
    run = run_udp(session, ("127.0.0.1", server.dtls_port), next_event=session.next_event)
    (event,) = run.events
    assert isinstance(event, OpenResult), event
    assert event.code == "2.05" and event.payload  # the server's clock, e.g. "Nov 29 02:30:10"
    assert run.exchanges <= 5
    assert len(run.sent) == 1 + 1 + 1 + 1 + 1  # CH, CH+cookie, CKE+CCS+Fin, request, close


def test_put_then_get_carries_the_payload(server: LibcoapServer) -> None:
    address = ("127.0.0.1", server.dtls_port)
    put = OpenSession(
        IDENTITY,
        PSK.encode(),
        _uri(server, "example_data"),
        method="PUT",
        payload=b"door open",
        content_format=0,
    )
    run = run_udp(put, address, next_event=put.next_event)
    assert run.events == [OpenResult("2.01", b"")]  # Created: the resource had no data yet
    assert run.exchanges <= 5
    get = OpenSession(IDENTITY, PSK.encode(), _uri(server, "example_data"), method="GET")
    run = run_udp(get, address, next_event=get.next_event)
    assert run.events == [OpenResult("2.05", b"door open")]


def test_post_gets_a_coap_answer(server: LibcoapServer) -> None:
    """The example server has no POST handler: its 4.05 still proves the POST got through."""
    session = OpenSession(IDENTITY, PSK.encode(), _uri(server, "example_data"), payload=b"x")
    run = run_udp(session, ("127.0.0.1", server.dtls_port), next_event=session.next_event)
    assert run.events == [OpenResult("4.05", b"Method Not Allowed")]
    assert run.exchanges <= 5


def test_separate_response_from_async(server: LibcoapServer) -> None:
    """/async?1 answers with an empty ACK, then a CON response one second later."""
    session = OpenSession(IDENTITY, PSK.encode(), _uri(server, "async?1"), method="GET")
    run = run_udp(session, ("127.0.0.1", server.dtls_port), next_event=session.next_event)
    (event,) = run.events
    assert isinstance(event, OpenResult) and event.code == "2.05", event
    assert run.exchanges == 6  # one more for the empty ACK


def test_plain_dtls_client_handshake(server: LibcoapServer) -> None:
    client = DtlsClient(b"another-identity", PSK.encode())
    run = run_udp(client, ("127.0.0.1", server.dtls_port), next_event=client.next_event)
    assert run.events == [HandshakeCompleted()]
    assert run.exchanges == 4


def test_wrong_psk_is_refused() -> None:
    """OpenSSL (and GnuTLS) drop a Finished they cannot decrypt, with no alert
    (RFC 6347 4.1.2.7), so the client times out."""
    tool = require_tool("coap-server-openssl")
    with libcoap_server(tool, PSK) as server:
        client = DtlsClient(IDENTITY, b"wrong-psk-wrong!", max_retransmissions=0)
        run = run_udp(client, ("127.0.0.1", server.dtls_port), next_event=client.next_event)
    assert run.events == [ConnectionTerminated("handshake timed out", None, from_peer=False)]


def test_wrong_psk_open_fails_with_a_reason() -> None:
    tool = require_tool("coap-server-gnutls")
    with libcoap_server(tool, PSK) as server:
        session = OpenSession(
            IDENTITY, b"wrong-psk-wrong!", _uri(server, "time"), method="GET", max_retransmissions=0
        )
        run = run_udp(session, ("127.0.0.1", server.dtls_port), next_event=session.next_event)
    assert run.events == [
        OpenFailed("handshake failed: handshake timed out", None, FailureKind.TIMEOUT)
    ]
