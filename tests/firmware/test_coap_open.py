"""OpenSession: the CoAP exchange after the handshake, against scripted CoAP answers.

The DTLS side is the test-only ``ScriptedServer``; the CoAP answers are made with
aiocoap's codec (``CoapResponder``) or by hand. Interop with real servers is in
test_dtls_tinydtls.py and test_libcoap_interop.py.
"""

from __future__ import annotations

from collections.abc import Callable

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.coap_message import CoapFormatError, decode_message
from firmware.coap_open import (
    MAX_RETRANSMIT,
    FailureKind,
    OpenFailed,
    OpenResult,
    OpenSession,
    OpenState,
)
from firmware.dtls.client import DtlsUsageError
from tests.firmware.peers import CoapResponder, ScriptedServer, run_in_memory

IDENTITY = b"card-key-0001"
PSK = b"c2VjcmV0LXBzay0x"
URI = "coaps://lock.example/open"


def _session(**kwargs: object) -> OpenSession:
    return OpenSession(IDENTITY, PSK, URI, **kwargs)  # type: ignore[arg-type]


def _answer(
    make: Callable[[aiocoap.Message], aiocoap.Message | None],
) -> Callable[[bytes], bytes | None]:
    def responder(data: bytes) -> bytes | None:
        request = aiocoap.Message.decode(data)
        if request.mtype in (Type.ACK, Type.RST):
            return None
        response = make(request)
        return None if response is None else bytes(response.encode())

    return responder


def _ack(
    request: aiocoap.Message,
    code: Code = Code.CHANGED,
    token: bytes | None = None,
    payload: bytes = b"",
) -> aiocoap.Message:
    response = aiocoap.Message(code=code, payload=payload)
    response.mtype, response.mid = Type.ACK, request.mid
    response.token = request.token if token is None else token
    return response


def test_piggybacked_response_in_five_exchanges() -> None:
    server = ScriptedServer(IDENTITY, PSK, responder=CoapResponder())
    session = _session(payload=b"hi", content_format=0)
    run = run_in_memory(session, server, next_event=session.next_event)
    assert run.events == [OpenResult("2.04", b"opened")]
    assert run.exchanges == 5
    assert session.state is OpenState.DONE
    request = aiocoap.Message.decode(server.received[0])
    assert (request.mtype, request.code) == (Type.CON, Code.POST)
    assert len(request.token) == 8
    assert request.opt.content_format == 0 and request.payload == b"hi"
    assert run.sent[-1][0] == 21  # the last datagram of exchange 5 is our close_notify


def test_separate_response_is_acknowledged() -> None:
    responder = CoapResponder(separate=True)
    server = ScriptedServer(IDENTITY, PSK, responder=responder)
    session = _session()
    run = run_in_memory(session, server, next_event=session.next_event)
    assert run.events == [OpenResult("2.04", b"opened")]
    assert run.exchanges == 6
    request, ack = (decode_message(m) for m in server.received)
    assert ack.is_empty and ack.type.name == "ACK"
    assert ack.message_id == (request.message_id + 1) & 0xFFFF  # the separate response's MID


def test_reset_fails_the_open() -> None:
    def reset(request: aiocoap.Message) -> aiocoap.Message:
        rst = aiocoap.Message(code=Code.EMPTY)
        rst.mtype, rst.mid = Type.RST, request.mid
        return rst

    server = ScriptedServer(IDENTITY, PSK, responder=_answer(reset))
    session = _session()
    run = run_in_memory(session, server, next_event=session.next_event)
    assert run.events == [OpenFailed("the server reset the request (RST)", None, FailureKind.RESET)]
    assert session.state is OpenState.FAILED


def test_unanswered_request_is_retransmitted_then_times_out() -> None:
    server = ScriptedServer(IDENTITY, PSK, responder=lambda data: None)
    session = _session()
    run = run_in_memory(session, server, next_event=session.next_event)
    assert run.events == [
        OpenFailed("timed out waiting for the CoAP response", None, FailureKind.TIMEOUT)
    ]
    assert len(server.received) == 1 + MAX_RETRANSMIT
    assert len(set(server.received)) == 1  # the same CoAP message, in fresh DTLS records


def test_coap_timer_backs_off() -> None:
    server = ScriptedServer(IDENTITY, PSK, responder=lambda data: None)
    # The largest random factor; the handshake's round trips took no time, so the link
    # timeout is its floor (0.1 s) and ACK_TIMEOUT twice that (RFC 7252 4.8.1).
    session = _handshake_done(server, rng=lambda n: b"\xff" * n)
    session.datagrams_to_send(0.0)
    deadlines = []
    while (timer := session.get_timer()) is not None:
        deadlines.append(timer)
        session.handle_timer(timer)
        session.datagrams_to_send(timer)
    assert deadlines == pytest.approx([0.3, 0.9, 2.1, 4.5, 9.3])  # 0.3 s, doubling: RFC 7252 4.2


def test_wrong_token_is_ignored_and_the_right_one_accepted() -> None:
    calls = []

    def make(request: aiocoap.Message) -> aiocoap.Message:
        calls.append(request)
        if len(calls) == 1:
            return _ack(request, token=b"not-ours")
        return _ack(request, payload=b"ok")

    server = ScriptedServer(IDENTITY, PSK, responder=_answer(make))
    session = _session()
    run = run_in_memory(session, server, next_event=session.next_event)
    assert run.events == [OpenResult("2.04", b"ok")]
    assert len(calls) == 2  # the first answer was ignored; the retransmission got the second


def _handshake_done(server: ScriptedServer, **kwargs: object) -> OpenSession:
    """A session whose handshake with ``server`` is over, its request not yet sent."""
    session = _session(**kwargs)
    session.connect(0.0)
    while session.state is not OpenState.AWAITING_RESPONSE:
        for datagram in session.datagrams_to_send(0.0):
            server.receive(datagram)
        for datagram in server.take():
            session.receive_datagram(datagram, 0.0)
    return session


def _request_sent_to_a_silent_server(**kwargs: object) -> tuple[OpenSession, ScriptedServer]:
    """A finished handshake and the request delivered; the server has not answered."""
    server = ScriptedServer(IDENTITY, PSK, responder=lambda data: None)
    session = _handshake_done(server, **kwargs)
    for datagram in session.datagrams_to_send(0.0):
        server.receive(datagram)
    return session, server


def test_unknown_confirmable_gets_a_reset() -> None:
    session, server = _request_sent_to_a_silent_server()
    other = aiocoap.Message(code=Code.CONTENT, payload=b"?")
    other.mtype, other.mid, other.token = Type.CON, 4242, b"zz"
    server.send(bytes(other.encode()))
    for datagram in server.take():
        session.receive_datagram(datagram, 1.0)
    for datagram in session.datagrams_to_send(1.0):
        server.receive(datagram)
    rst = decode_message(server.received[-1])
    assert rst.type.name == "RST" and rst.message_id == 4242
    assert session.state is OpenState.AWAITING_RESPONSE


def test_response_and_close_notify_in_one_datagram() -> None:
    """The DTLS session ends in the same datagram as a separate CON response: no raise."""
    session, server = _request_sent_to_a_silent_server()
    request = decode_message(server.received[0])
    response = aiocoap.Message(code=Code.CHANGED, payload=b"late")
    response.mtype, response.mid, response.token = Type.CON, 7, request.token
    server.send(bytes(response.encode()))
    server._send(21, 1, b"\x01\x00")
    session.receive_datagram(b"".join(server.take()), 1.0)
    assert session.next_event() == OpenResult("2.04", b"late")
    assert session.next_event() is None


def test_usage_errors() -> None:
    with pytest.raises(DtlsUsageError):
        OpenSession(IDENTITY, PSK, URI, method="FETCH")
    with pytest.raises(CoapFormatError):
        OpenSession(IDENTITY, PSK, "coap://lock/open")
    session = _session()
    session.connect(0.0)
    with pytest.raises(DtlsUsageError):
        session.connect(0.0)
    assert PSK.decode() not in repr(session) and "lock.example" in repr(session)


def test_close_before_the_end_reports_a_failure() -> None:
    session = _session()
    session.connect(0.0)
    session.close()
    assert session.next_event() == OpenFailed("closed locally", None, FailureKind.LOCAL)
    assert session.get_timer() is None


def _session_awaiting_response() -> tuple[OpenSession, ScriptedServer, bytes]:
    session, server = _request_sent_to_a_silent_server(rng=lambda n: bytes(range(1, n + 1)))
    return session, server, server.received[0]


_coap_like = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda first, code, mid, rest: bytes([first, code]) + mid + rest,
        st.integers(0, 255),
        st.integers(0, 255),
        st.sampled_from([b"\x01\x02", b"\x00\x00", b"\xff\xff"]),
        st.one_of(st.binary(max_size=30), st.just(bytes(range(1, 9)))),
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_coap_like, min_size=1, max_size=5))
def test_fuzz_coap_messages_never_raise(messages: list[bytes]) -> None:
    """Any sealed CoAP payload: nothing raises, at most one end event, never a wrong result."""
    session, server, request = _session_awaiting_response()
    token = decode_message(request).token
    for message in messages:
        server.send(message)
        for datagram in server.take():
            session.receive_datagram(datagram, 1.0)
        session.datagrams_to_send(1.0)
    events = list(iter(session.next_event, None))
    assert len(events) <= 1
    if any(isinstance(event, OpenResult) for event in events):
        assert session.state is OpenState.DONE
        assert any(_is_response_to(message, token) for message in messages)


def _is_response_to(data: bytes, token: bytes) -> bool:
    try:
        message = decode_message(data)
    except CoapFormatError:
        return False
    return message.token == token and message.is_response
