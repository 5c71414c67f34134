"""Any state x any input: only our own events come out, never an exception.

One real conversation with OpenSSL (``ssl``, HelloRetryRequest path, data,
close_notify) is recorded record by record. Because the server's randomness
is injected and its ECDSA signatures are deterministic (RFC 6979), replaying
the first *k* client records into a fresh server with the same seed brings it
to the same state every time: before ClientHello, after HelloRetryRequest,
expecting Certificate, CertificateVerify, Finished, connected, closed. Then
hypothesis feeds random bytes, or the next genuine record mutated.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.tls13 import (
    AlertDescription,
    ApplicationData,
    ConnectionClosed,
    HandshakeCompleted,
    ServerState,
    Tls13Server,
)
from tests.firmware.tls_fixtures import CardPki
from tests.firmware.tls_peer import SslClient, client_context

SEED = 2024


def split_records(data: bytes) -> list[bytes]:
    records = []
    while data:
        end = 5 + int.from_bytes(data[3:5], "big")
        records.append(data[:end])
        data = data[end:]
    return records


@pytest.fixture(scope="module")
def fresh(card_pki: CardPki) -> Callable[[], Tls13Server]:
    """Servers that check certificates at one instant, so every replay takes the same path.

    The instant is read here, after the session's PKI exists: read at import, it
    fell before the certificates' start when the PKI was made minutes later.
    """
    now = time.time()
    return lambda: card_pki.server(now=now, rng=random.Random(SEED).randbytes)


@pytest.fixture(scope="module")
def conversation(card_pki: CardPki, fresh: Callable[[], Tls13Server]) -> list[bytes]:
    """The client's records of one whole connection, in order."""
    server = fresh()
    client = SslClient(client_context(card_pki), server)
    records: list[bytes] = []

    def record(data: bytes) -> bytes:
        records.extend(split_records(data))
        return data

    for _ in range(4):
        try:
            client.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        client.flush(mutate=record)
    client.tls.write(b"INSTALL something")
    client.flush(mutate=record)
    try:
        client.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    client.flush(mutate=record)
    assert server.state is ServerState.CLOSED
    return records


def test_replay_walks_through_every_state(
    fresh: Callable[[], Tls13Server], conversation: list[bytes]
) -> None:
    server = fresh()
    states = [server.state]
    for record in conversation:
        server.receive(record)
        states.append(server.state)
    assert set(states) == set(ServerState) - {ServerState.FAILED}


def check(server: Tls13Server) -> None:
    events = list(iter(server.next_event, None))
    assert all(
        isinstance(e, HandshakeCompleted | ApplicationData | ConnectionClosed) for e in events
    )
    assert isinstance(server.data_to_send(), bytes)
    if server.state is ServerState.FAILED:
        closed = events[-1]
        assert isinstance(closed, ConnectionClosed)
        assert closed.alert != AlertDescription.INTERNAL_ERROR, closed.reason  # that is a bug


def mutate(record: bytes, how: int, where: int, value: int) -> bytes:
    i = where % len(record)
    if how == 0:
        return record[:i] + bytes([record[i] ^ (value or 1)]) + record[i + 1 :]
    if how == 1:
        return record[:i]
    if how == 2:
        return record[:i] + bytes([value]) + record[i:]
    return record + record


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=st.integers(0, 20), garbage=st.binary(max_size=300))
def test_random_bytes_in_every_state(
    fresh: Callable[[], Tls13Server], conversation: list[bytes], prefix: int, garbage: bytes
) -> None:
    server = fresh()
    for record in conversation[: min(prefix, len(conversation))]:
        server.receive(record)
    server.receive(garbage)
    check(server)


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.integers(0, 20),
    how=st.integers(0, 3),
    where=st.integers(0, 10_000),
    value=st.integers(0, 255),
)
def test_mutated_next_record_in_every_state(
    fresh: Callable[[], Tls13Server],
    conversation: list[bytes],
    prefix: int,
    how: int,
    where: int,
    value: int,
) -> None:
    prefix = min(prefix, len(conversation) - 1)
    server = fresh()
    for record in conversation[:prefix]:
        server.receive(record)
    server.receive(mutate(conversation[prefix], how, where, value))
    for record in conversation[prefix + 1 :]:
        server.receive(record)
    check(server)
