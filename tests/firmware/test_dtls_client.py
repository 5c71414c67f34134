"""DtlsClient: API misuse, secrets, peer misbehaviour, and fuzzing in every state.

Peer misbehaviour comes from ``ScriptedServer`` (our record layer, test-only), the
only way to get a *validly sealed* wrong Finished or a forbidden ServerHello.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.dtls.client import (
    AlertDescription,
    ApplicationDataReceived,
    ConnectionTerminated,
    DtlsClient,
    DtlsState,
    DtlsUsageError,
    HandshakeCompleted,
)
from firmware.dtls.records import Record, encode_record
from tests.firmware.peers import ScriptedServer, run_in_memory

IDENTITY = b"card-key-0001"
PSK = b"c2VjcmV0LXBzay0x"


def _seeded_rng(seed: int = 1) -> Callable[[int], bytes]:
    counter = iter(range(seed, 10**9))
    return lambda n: bytes((next(counter) * 37) % 256 for _ in range(n))


def _alerts(datagrams: list[bytes]) -> list[bytes]:
    return [d[13:] for d in datagrams if d[0] == 21 and d[3:5] == b"\0\0"]


def _plaintext_handshake(msg_type: int, seq: int, body: bytes, record_seq: int = 0) -> bytes:
    n = len(body).to_bytes(3, "big")
    message = bytes([msg_type]) + n + seq.to_bytes(2, "big") + b"\0\0\0" + n + body
    return encode_record(Record(22, 0xFEFD, 0, record_seq, message))


# -- API misuse: local errors -----------------------------------------------------------


def test_misuse_raises_usage_errors() -> None:
    with pytest.raises(DtlsUsageError):
        DtlsClient(b"", PSK)
    with pytest.raises(DtlsUsageError):
        DtlsClient(b"x" * 129, PSK)
    with pytest.raises(DtlsUsageError):
        DtlsClient(IDENTITY, b"")
    with pytest.raises(DtlsUsageError):
        DtlsClient(IDENTITY, PSK, max_retransmissions=-1)
    client = DtlsClient(IDENTITY, PSK)
    with pytest.raises(DtlsUsageError):
        client.send_application_data(b"too early")
    client.connect(0.0)
    with pytest.raises(DtlsUsageError):
        client.connect(0.0)
    with pytest.raises(DtlsUsageError):
        client.send_application_data(b"still too early")
    with pytest.raises(DtlsUsageError):
        DtlsClient(IDENTITY, PSK, rng=lambda n: b"short").connect(0.0)


def test_oversized_application_data_is_refused() -> None:
    client = DtlsClient(IDENTITY, PSK)
    run_in_memory(client, ScriptedServer(IDENTITY, PSK), next_event=client.next_event)
    with pytest.raises(DtlsUsageError):
        client.send_application_data(bytes(2000))


def test_no_secret_leaves_the_object() -> None:
    server = ScriptedServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run = run_in_memory(client, server, next_event=client.next_event)
    assert run.events == [HandshakeCompleted()]
    secrets = [PSK, server.master]
    for secret in secrets:
        for datagram in run.sent:
            assert secret not in datagram
        assert secret.hex() not in repr(client) and secret.decode("latin-1") not in repr(client)
    assert "c2VjcmV0" not in repr(client)
    # the PSK and the master secret are dropped once the keys exist
    assert all(PSK != value for value in vars(client).values())
    assert all(server.master != value for value in vars(client).values())


def test_deterministic_with_injected_rng() -> None:
    def flights() -> list[bytes]:
        client = DtlsClient(IDENTITY, PSK, rng=_seeded_rng())
        return run_in_memory(
            client, ScriptedServer(IDENTITY, PSK), next_event=client.next_event
        ).sent

    assert flights() == flights()


# -- the handshake against a scripted server ---------------------------------------------


@pytest.mark.parametrize("hello_verify", [True, False])
@pytest.mark.parametrize("hint", [b"a hint", b"", None])
def test_handshake_variants(hello_verify: bool, hint: bytes | None) -> None:
    server = ScriptedServer(IDENTITY, PSK, hint=hint, hello_verify=hello_verify)
    client = DtlsClient(IDENTITY, PSK)
    run = run_in_memory(client, server, next_event=client.next_event)
    assert run.events == [HandshakeCompleted()]
    assert run.exchanges == (4 if hello_verify else 3)


def test_first_client_hello_and_hello_verify_are_not_hashed() -> None:
    """The scripted server hashes from the cookie ClientHello on; Finished would fail otherwise."""
    server = ScriptedServer(IDENTITY, PSK, hello_verify=True)
    client = DtlsClient(IDENTITY, PSK)
    run_in_memory(client, server, next_event=client.next_event)
    assert server.connected and client.state is DtlsState.CONNECTED


def _failing_run(mutate: Callable[[int, bytes], bytes]) -> tuple[DtlsClient, Any]:
    server = ScriptedServer(IDENTITY, PSK, mutate=mutate)
    client = DtlsClient(IDENTITY, PSK)
    run = run_in_memory(client, server, next_event=client.next_event)
    return client, run


def _change(target: int, new: Callable[[bytes], bytes]) -> Callable[[int, bytes], bytes]:
    return lambda msg_type, body: new(body) if msg_type == target else body


@pytest.mark.parametrize(
    ("mutate", "alert"),
    [
        (_change(20, lambda b: bytes([b[0] ^ 1]) + b[1:]), AlertDescription.decrypt_error),
        (_change(20, lambda b: b + b"\0"), AlertDescription.decrypt_error),
        (_change(2, lambda b: b[:35] + b"\xc0\xa4" + b[37:]), AlertDescription.illegal_parameter),
        (_change(2, lambda b: b[:37] + b"\x01" + b[38:]), AlertDescription.illegal_parameter),
        (_change(2, lambda b: b"\xfe\xff" + b[2:]), AlertDescription.protocol_version),
        (
            _change(2, lambda b: b[:38] + bytes.fromhex("0004 0023 0000")),
            AlertDescription.unsupported_extension,
        ),
        (
            _change(2, lambda b: b[:38] + bytes.fromhex("0005 ff01 0001 01")),
            AlertDescription.handshake_failure,
        ),
        (_change(2, lambda b: b + b"\0"), AlertDescription.decode_error),
        (_change(12, lambda b: b + b"\0"), AlertDescription.decode_error),
        (_change(14, lambda b: b"\0"), AlertDescription.decode_error),
        (_change(3, lambda b: b[:2] + b"\0"), AlertDescription.illegal_parameter),  # empty cookie
    ],
)
def test_peer_misbehaviour_sends_a_fatal_alert(
    mutate: Callable[[int, bytes], bytes], alert: AlertDescription
) -> None:
    client, run = _failing_run(mutate)
    (event,) = run.events
    assert isinstance(event, ConnectionTerminated)
    assert (event.alert, event.from_peer) == (alert, False)
    assert client.state is DtlsState.FAILED
    last = run.sent[-1]
    assert last[0] == 21  # the alert went out (sealed if keys were in use)
    if last[3:5] == b"\0\0":
        assert last[13:] == bytes([2, alert])


def test_unexpected_message_in_state() -> None:
    client = DtlsClient(IDENTITY, PSK)
    client.connect(0.0)
    client.datagrams_to_send(0.0)
    client.receive_datagram(_plaintext_handshake(14, 0, b""), 0.0)  # ServerHelloDone first
    assert client.state is DtlsState.FAILED
    assert _alerts(client.datagrams_to_send(0.0)) == [bytes([2, 10])]
    event = client.next_event()
    assert isinstance(event, ConnectionTerminated) and event.alert == 10


def test_change_cipher_spec_too_early_is_unexpected() -> None:
    client = DtlsClient(IDENTITY, PSK)
    client.connect(0.0)
    client.receive_datagram(encode_record(Record(20, 0xFEFD, 0, 0, b"\x01")), 0.0)
    assert client.state is DtlsState.FAILED
    assert _alerts(client.datagrams_to_send(0.0)) == [bytes([2, 10])]


def test_fatal_alert_from_peer_ends_the_handshake() -> None:
    client = DtlsClient(IDENTITY, PSK)
    client.connect(0.0)
    client.receive_datagram(encode_record(Record(21, 0xFEFD, 0, 0, b"\x02\x28")), 0.0)
    assert client.next_event() == ConnectionTerminated(
        "peer sent fatal alert handshake_failure", 40, from_peer=True
    )
    assert client.state is DtlsState.FAILED and client.get_timer() is None


def test_warning_alert_is_ignored_and_close_notify_closes() -> None:
    server = ScriptedServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run_in_memory(client, server, next_event=client.next_event)
    server._send(21, 1, b"\x01\x64")  # warning no_renegotiation
    server._send(21, 1, b"\x01\x00")  # close_notify
    for datagram in server.take():
        client.receive_datagram(datagram, 0.0)
    assert client.next_event() == ConnectionTerminated("closed by peer", 0, from_peer=True)
    assert client.state is DtlsState.CLOSED
    assert len(client.datagrams_to_send(0.0)) == 1  # our close_notify in reply


def test_unauthenticated_records_after_handshake_are_dropped() -> None:
    server = ScriptedServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK)
    run_in_memory(client, server, next_event=client.next_event)
    # plaintext alert and application data in epoch 0 cannot hurt an established session
    client.receive_datagram(encode_record(Record(21, 0xFEFD, 0, 9, b"\x02\x28")), 0.0)
    client.receive_datagram(encode_record(Record(23, 0xFEFD, 0, 9, b"hi")), 0.0)
    client.receive_datagram(encode_record(Record(23, 0xFEFD, 1, 9, bytes(30))), 0.0)
    assert client.state is DtlsState.CONNECTED and client.next_event() is None
    server._send(23, 1, b"real")
    for datagram in server.take():
        client.receive_datagram(datagram, 0.0)
    assert client.next_event() == ApplicationDataReceived(b"real")


def test_retransmitted_server_flight_triggers_our_retransmission() -> None:
    """RFC 6347 4.2.4: the server repeating ServerHelloDone means our flight was lost."""
    server = ScriptedServer(IDENTITY, PSK, hello_verify=False)
    client = DtlsClient(IDENTITY, PSK)
    client.connect(0.0)
    for datagram in client.datagrams_to_send(0.0):
        server.receive(datagram)
    flight = server.take()
    for datagram in flight:
        client.receive_datagram(datagram, 0.0)
    first = client.datagrams_to_send(0.0)  # lost on the way
    timer = client.get_timer()
    client.receive_datagram(flight[-1], 0.5)  # the server repeats ServerHelloDone
    again = client.datagrams_to_send(0.5)
    assert len(again) == len(first) == 1 and again != first
    assert client.get_timer() == timer  # the timer keeps its deadline


def test_timeout_gives_up_after_the_budget() -> None:
    client = DtlsClient(IDENTITY, PSK, max_retransmissions=3)
    client.connect(0.0)
    sent = [client.datagrams_to_send(0.0)]
    times = [0.0]
    while (timer := client.get_timer()) is not None:
        times.append(timer)
        client.handle_timer(timer)
        sent.append(client.datagrams_to_send(timer))
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0]  # 1 s, doubling (RFC 6347 4.2.4.1)
    assert [len(s) for s in sent] == [1, 1, 1, 1, 0]
    assert client.next_event() == ConnectionTerminated("handshake timed out", None, False)


def test_timeout_is_capped_at_sixty_seconds() -> None:
    client = DtlsClient(IDENTITY, PSK, max_retransmissions=9)
    client.connect(0.0)
    client.datagrams_to_send(0.0)
    gaps = []
    now = 0.0
    while (timer := client.get_timer()) is not None:
        gaps.append(timer - now)
        now = timer
        client.handle_timer(now)
        client.datagrams_to_send(now)
    assert gaps == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


# -- fuzzing: any input, in any state, raises nothing and completes nothing ------------------


def _client_in_state(step: int) -> tuple[DtlsClient, list[bytes]]:
    """A client after ``step`` server messages (0..6); also the server's next datagram."""
    server = ScriptedServer(IDENTITY, PSK, hint=b"hint")
    client = DtlsClient(IDENTITY, PSK, rng=_seeded_rng())
    client.connect(0.0)
    pending: list[bytes] = []
    for _ in range(step):
        if not pending:
            for datagram in client.datagrams_to_send(0.0):
                server.receive(datagram)
            pending = server.take()
        client.receive_datagram(pending.pop(0), 0.0)
    if not pending:
        for datagram in client.datagrams_to_send(0.0):
            server.receive(datagram)
        pending = server.take()
    while client.next_event() is not None:
        pass
    return client, pending


STATES = [
    DtlsState.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO,
    DtlsState.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO,  # after the cookie
    DtlsState.CLIENT_EXPECT_SERVER_KEY_EXCHANGE_OR_HELLO_DONE,
    DtlsState.CLIENT_EXPECT_SERVER_HELLO_DONE,
    DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC,
    DtlsState.CLIENT_EXPECT_FINISHED,
    DtlsState.CONNECTED,
]


def test_scripted_steps_reach_every_state() -> None:
    assert [_client_in_state(step)[0].state for step in range(7)] == STATES


_record = st.builds(
    lambda ctype, version, epoch, seq, body: encode_record(
        Record(ctype, version, epoch, seq, body)
    ),
    st.sampled_from([20, 21, 22, 23, 0, 99]),
    st.sampled_from([0xFEFD, 0xFEFF, 0x0303]),
    st.integers(0, 2),
    st.integers(0, 2**48 - 1),
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda t, length, seq, off, frag: (
                bytes([t])
                + length.to_bytes(3, "big")
                + seq.to_bytes(2, "big")
                + off.to_bytes(3, "big")
                + len(frag).to_bytes(3, "big")
                + frag
            ),
            st.sampled_from([0, 2, 3, 4, 11, 12, 13, 14, 20, 99]),
            st.integers(0, 70),
            st.integers(0, 6),
            st.integers(0, 70),
            st.binary(max_size=70),
        ),
    ),
)
_datagram = st.one_of(
    st.binary(max_size=200),
    st.lists(_record, min_size=1, max_size=4).map(b"".join),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.integers(0, 6), datagrams=st.lists(_datagram, min_size=1, max_size=4))
def test_fuzz_any_datagram_in_any_state(step: int, datagrams: list[bytes]) -> None:
    client, _ = _client_in_state(step)
    was_connected = client.state is DtlsState.CONNECTED
    for datagram in datagrams:
        client.receive_datagram(datagram, 0.0)  # must not raise
        client.datagrams_to_send(0.0)
        client.handle_timer(100.0)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    assert not any(isinstance(e, HandshakeCompleted | ApplicationDataReceived) for e in events)
    assert client.state is not DtlsState.CONNECTED or was_connected


@settings(max_examples=80, deadline=None)
@given(step=st.integers(0, 5), data=st.data())
def test_fuzz_bit_flips_in_the_real_next_datagram(step: int, data: st.DataObject) -> None:
    client, pending = _client_in_state(step)
    genuine = pending[0]
    index = data.draw(st.integers(0, len(genuine) - 1))
    flip = data.draw(st.integers(1, 255))
    corrupted = genuine[:index] + bytes([genuine[index] ^ flip]) + genuine[index + 1 :]
    client.receive_datagram(corrupted, 0.0)
    assert client.state is not DtlsState.CONNECTED
    assert all(not isinstance(e, HandshakeCompleted) for e in iter(client.next_event, None))


def test_finished_before_change_cipher_spec_is_kept() -> None:
    """Datagrams reorder: the sealed Finished may arrive before the CCS that opens epoch 1."""
    server = ScriptedServer(IDENTITY, PSK, hello_verify=False)
    client = DtlsClient(IDENTITY, PSK)
    client.connect(0.0)
    for _ in range(2):
        for datagram in client.datagrams_to_send(0.0):
            server.receive(datagram)
        flight = server.take()
        if len(flight) == 2 and flight[0][0] == 20:  # CCS, Finished: deliver reversed
            flight.reverse()
        for datagram in flight:
            client.receive_datagram(datagram, 0.0)
    assert client.next_event() == HandshakeCompleted()
