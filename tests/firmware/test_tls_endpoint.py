"""TLS#2 end to end: the key server (``ssl``) provisions the card through the endpoint.

Also through APDUs: the endpoint's route registered on the applet team's
``Applet``, blocks of 240 bytes as draft-urien-tls-se's host sends them, the
answer fetched with GET RESPONSE, and the container then seen by LIST.
"""

from __future__ import annotations

import ssl
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elock_common import card_protocol as c
from elock_common import provisioning_wire as wire
from elock_common.container import parse_list
from elock_testkit.tls_card import SELECT, applet_with_tls, carry_records, sender
from firmware.apdu import ApduCommand
from firmware.applet import Applet
from firmware.provisioning_channel import (
    ContainerStore,
    InMemoryContainerStore,
    KeyringContainerStore,
)
from firmware.store import Eeprom, Store
from firmware.tls13 import AlertDescription
from firmware.tls_apdu import SW_TLS_END, SW_TLS_OPEN, TlsApduHandler
from firmware.tls_endpoint import EndpointState, EndpointUsageError, TlsEndpoint
from tests.firmware.test_provisioning_channel import PSK, container
from tests.firmware.tls_fixtures import CardPki
from tests.firmware.tls_peer import client_context


def endpoint_for(card_pki: CardPki, store: ContainerStore) -> TlsEndpoint:
    return TlsEndpoint(
        certificate_chain=[card_pki.card_cert],
        private_key=card_pki.card_key,
        client_trust_anchor=card_pki.key_server_ca,
        store=store,
    )


class KeyServer:
    """The key server's TLS#2 client over memory BIOs; ``carry`` is whatever moves the bytes."""

    def __init__(self, card_pki: CardPki) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context(card_pki).wrap_bio(self.incoming, self.outgoing)
        self.wire: list[bytes] = []  # every byte that crossed, both ways

    def handshake(self, carry: object) -> None:
        for _ in range(5):
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.round_trip(carry)
        self.round_trip(carry)

    def round_trip(self, carry: object, mutate: object = None) -> None:
        data = self.outgoing.read()
        if mutate is not None:
            data = mutate(data)  # type: ignore[operator]
        answer = carry(data)  # type: ignore[operator]
        self.wire += [data, answer]
        self.incoming.write(answer)

    def command(self, carry: object, message: bytes, mutate: object = None) -> list[wire.Response]:
        self.tls.write(message)
        self.round_trip(carry, mutate)
        data = bytearray()
        try:
            while piece := self.tls.read(65536):
                data += piece
        except ssl.SSLWantReadError:
            pass
        return [
            wire.decode_response(t, v or b"") for t, v in wire.MessageSplitter().feed(bytes(data))
        ]


def _provisioning_session(
    card_pki: CardPki,
) -> tuple[InMemoryContainerStore, TlsEndpoint, KeyServer]:
    """An endpoint over an empty store, opened, and a key server done with its handshake."""
    store = InMemoryContainerStore()
    endpoint = endpoint_for(card_pki, store)
    endpoint.open(time.time())
    key_server = KeyServer(card_pki)
    key_server.handshake(endpoint.feed)
    return store, endpoint, key_server


def test_provisioning_through_tls(card_pki: CardPki) -> None:
    store, endpoint, key_server = _provisioning_session(card_pki)
    assert endpoint.state is EndpointState.OPEN
    assert endpoint.peer_certificate is not None
    (installed,) = key_server.command(endpoint.feed, wire.encode_install(container()))
    assert installed.status is wire.Status.DONE
    (again,) = key_server.command(endpoint.feed, wire.encode_install(container()))
    assert again.status is wire.Status.UNCHANGED
    listed, deleted = key_server.command(endpoint.feed, wire.encode_list() + wire.encode_delete(1))
    assert [k.container_id for k in listed.containers()] == [1]
    assert deleted.status is wire.Status.DONE and store.list() == []
    # What RACS and the phone carried: ciphertext only.
    assert all(PSK not in chunk for chunk in key_server.wire)
    key_server.incoming.write(endpoint.close())
    assert endpoint.state is EndpointState.CLOSED
    assert key_server.tls.read(1) == b""  # close_notify arrived


def flip_last_byte_but_one(data: bytes) -> bytes:
    return data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]


def test_a_record_changed_in_flight_aborts_and_leaves_the_store(card_pki: CardPki) -> None:
    store, endpoint, key_server = _provisioning_session(card_pki)
    (first,) = key_server.command(endpoint.feed, wire.encode_install(container(1)))
    assert first.status is wire.Status.DONE
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        key_server.command(
            endpoint.feed,
            wire.encode_install(container(2, identity=b"second")),
            mutate=flip_last_byte_but_one,
        )
    assert endpoint.state is EndpointState.FAILED
    assert endpoint.closed_by is not None
    assert endpoint.closed_by.alert is AlertDescription.BAD_RECORD_MAC
    assert [k.container_id for k in store.list()] == [1]  # the tampered INSTALL never ran
    endpoint.abort()  # the host resets the card
    assert endpoint.state is EndpointState.IDLE
    with pytest.raises(EndpointUsageError):
        endpoint.feed(b"")


def test_a_broken_provisioning_stream_closes_the_session(card_pki: CardPki) -> None:
    endpoint = endpoint_for(card_pki, InMemoryContainerStore())
    endpoint.open(time.time())
    key_server = KeyServer(card_pki)
    key_server.handshake(endpoint.feed)
    (answer,) = key_server.command(endpoint.feed, b"\xff\x00")
    assert answer.status is wire.Status.MALFORMED
    assert endpoint.state is EndpointState.CLOSED


def test_open_starts_over(card_pki: CardPki) -> None:
    endpoint = endpoint_for(card_pki, InMemoryContainerStore())
    with pytest.raises(EndpointUsageError):
        endpoint.feed(b"\x16")
    endpoint.open(time.time())
    endpoint.feed(b"\x16\x03\x01")  # part of a ClientHello
    endpoint.open(time.time())  # a new RESET drops it
    KeyServer(card_pki).handshake(endpoint.feed)
    assert endpoint.state is EndpointState.OPEN


# -- through APDUs and the applet's dispatcher --------------------------------------------


class ApduHost:
    """The host side of draft-urien-tls-se, counting the APDUs it sends."""

    def __init__(self, applet: Applet) -> None:
        self._send = sender(applet)
        self.last_sw = 0
        self.apdus = 0

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus += 1
        return self._send(apdu)

    def carry(self, records: bytes) -> bytes:
        # every block ends with the session's status (TLS-SE): 9000 or 9001 here
        answer, self.last_sw = carry_records(self.send, records, ok=(0x9000, SW_TLS_OPEN))
        assert self.last_sw in (0x9000, SW_TLS_OPEN), hex(self.last_sw)
        return answer


def test_provisioning_through_the_applet(card_pki: CardPki) -> None:
    applet, handler = applet_with_tls(card_pki.card_cert, card_pki.card_key, card_pki.key_server_ca)
    host = ApduHost(applet)
    assert host.send(SELECT)[1] == 0x9000
    assert host.send(bytes.fromhex("00D8000000"))[1] == 0x9000  # RESET TLS, as the draft
    key_server = KeyServer(card_pki)
    key_server.handshake(host.carry)
    handshake_apdus = host.apdus
    assert handler.session_sw == SW_TLS_OPEN
    assert host.last_sw == SW_TLS_OPEN  # the dispatcher ends the answer with 9001
    (installed,) = key_server.command(host.carry, wire.encode_install(container(3)))
    assert installed.status is wire.Status.DONE
    entries, sw = host.send(bytes([0x80, c.INS_LIST, 0x00, 0x00, 0x00]))
    assert sw == 0x9000 and [k.container_id for k in parse_list(entries)] == [3]
    assert handshake_apdus <= 12
    assert host.send(bytes.fromhex("00D8010300"))[1] == 0x6A86  # clear-text mode refused
    applet.reset()
    handler.reset()
    assert handler.session_sw == 0x9000
    assert host.send(SELECT)[1] == 0x9000
    assert host.send(bytes.fromhex("00D8000301AA"))[1] == 0x6985  # no session


def test_a_failed_session_reports_its_end(card_pki: CardPki) -> None:
    endpoint = endpoint_for(card_pki, InMemoryContainerStore())
    handler = TlsApduHandler(endpoint, clock=time.time)
    handler.handle_tls(ApduCommand(0x00, 0xD8, 0x00, 0x00))
    answer = handler.handle_tls(ApduCommand(0x00, 0xD8, 0x00, 0x03, b"\x17\x03\x03\x00\x01x"))
    assert answer[:1] == b"\x15"  # a plaintext alert for the host to forward
    assert handler.session_sw == SW_TLS_END


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    session=st.booleans(),
    commands=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.binary(max_size=300)), max_size=4
    ),
)
def test_any_tls_apdu_gets_a_declared_status_word(
    card_pki: CardPki, session: bool, commands: list[tuple[int, int, bytes]]
) -> None:
    applet = Applet(Store(Eeprom()))
    endpoint = endpoint_for(card_pki, KeyringContainerStore(applet.keyring))
    handler = TlsApduHandler(endpoint, clock=time.time)
    (entry,) = handler.routes()
    applet.registry.add(entry)
    applet.process(bytes([0x00, 0xA4, 0x04, 0x00, len(c.AID)]) + c.AID)
    if session:
        applet.process(bytes.fromhex("00D8000000"))
    for p1, p2, data in commands:
        apdu = bytes([0x00, 0xD8, p1, p2]) + (
            bytes([len(data[:255])]) + data[:255] if data else b""
        )
        response = applet.process(apdu)
        assert entry.declares(int.from_bytes(response[-2:], "big")), response[-2:].hex()
