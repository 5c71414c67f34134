"""The key host and the real applet against a hostile or lossy lock address, over loopback UDP.

The card runs its own DTLS and CoAP client (in this process, as ``--card`` does);
the "lock" is tinydtls in memory behind a loopback UDP socket, and the test adds
what a spoofer at the lock's address (or a hostile lock) sends besides. Whatever
arrives, ``open_door`` must end with one of the key host's own errors, and the
right one: after the request went out, "unknown" (the door may be open), never a
card problem.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import cast

import pytest

from elock_common import card_protocol as c
from elock_testkit.applet_card import applet_with_key
from firmware.applet import Applet
from key_client.cards import AppletChannel
from key_client.carrier import open_door
from key_client.channel import KeyInfo
from key_client.errors import (
    CardError,
    CardMissingError,
    OutcomeUnknownError,
    UnreachableError,
)
from tests.firmware.peers import CoapResponder, TinyDtlsServer

IDENTITY = b"card-key-hostile-0001"
PSK = b"c2VjcmV0LXBzay1o"  # tinydtls takes PSKs of at most 16 bytes

# (what the lock received, whether it was a CoAP request) -> extra datagrams to send back
Extras = Callable[[bytes, bool], list[bytes]]


class SilentDoor(CoapResponder):
    """A door that takes the request and never answers it (the answer is lost)."""

    def __call__(self, data: bytes) -> bytes | None:
        super().__call__(data)
        return None


class UdpLock(asyncio.DatagramProtocol):
    """tinydtls behind a loopback UDP socket; ``extras`` adds datagrams of the test's own."""

    def __init__(self, responder: CoapResponder, extras: Extras) -> None:
        self.responder = responder
        self.server = TinyDtlsServer(IDENTITY, PSK, responder)
        self.extras = extras
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        requests = len(self.responder.requests)
        self.server.receive(data)
        for datagram in self.server.take():
            self.transport.sendto(datagram, addr)
        for datagram in self.extras(data, len(self.responder.requests) > requests):
            self.transport.sendto(datagram, addr)


def _card(uri: str) -> tuple[Applet, AppletChannel, KeyInfo]:
    return applet_with_key(uri, IDENTITY, PSK)


async def _lock(responder: CoapResponder, extras: Extras) -> tuple[asyncio.DatagramTransport, int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: UdpLock(responder, extras), local_addr=("127.0.0.1", 0)
    )
    return transport, transport.get_extra_info("sockname")[1]


def _junk(count: int, size: int) -> list[bytes]:
    """Datagrams shaped like DTLS records that authenticate nothing: application data."""
    return [
        bytes([23, 0xFE, 0xFD, 0, 1]) + os.urandom(6) + (size - 13).to_bytes(2, "big")
        + os.urandom(size - 13)
        for _ in range(count)
    ]  # fmt: skip


async def test_big_junk_after_the_request_is_unknown_not_a_card_problem() -> None:
    """A spoofer at the lock's address answers the request with three 1.5 kB datagrams:
    the card drops them (they do not authenticate), and the answer stays "unknown"."""
    transport, port = await _lock(
        SilentDoor(), lambda data, request: _junk(3, 1500) if request else []
    )
    applet, channel, key = _card(f"coaps://127.0.0.1:{port}/open")
    try:
        with pytest.raises(OutcomeUnknownError, match="the door may be open"):
            await open_door(channel, key, timeout=1.5, retransmit=0.05)
    finally:
        transport.close()
    assert applet.opener.session is None  # the host closed the Open


async def test_big_junk_during_the_handshake_is_unreachable_not_a_card_problem() -> None:
    """Big datagrams that are not a lock's, with every handshake flight: still "unreachable"."""
    transport, port = await _lock(SilentDoor(), lambda data, request: _junk(3, 1500))
    applet, channel, key = _card(f"coaps://127.0.0.1:{port}/open")
    try:
        with pytest.raises((UnreachableError, OutcomeUnknownError)):
            await open_door(channel, key, timeout=1.5, retransmit=0.05)
    finally:
        transport.close()
    assert applet.opener.session is None


async def test_a_flood_ahead_of_the_locks_answer_does_not_lose_the_answer() -> None:
    """Twelve junk datagrams arrive just before every real flight: more than one exchange
    carries; the lock's own datagrams must still reach the card, and the door opens."""
    transport, port = await _lock(CoapResponder(), lambda data, request: [])
    lock = transport.get_protocol()
    assert isinstance(lock, UdpLock)
    real = lock.datagram_received

    def flood_first(data: bytes, addr: tuple[str, int]) -> None:
        assert lock.transport is not None
        for datagram in _junk(12, 100):
            lock.transport.sendto(datagram, addr)
        real(data, addr)

    lock.datagram_received = flood_first  # type: ignore[method-assign]
    _, channel, key = _card(f"coaps://127.0.0.1:{port}/open")
    try:
        outcome = await open_door(channel, key, timeout=5, retransmit=0.5)
    finally:
        transport.close()
    assert outcome.code == "2.04"


@pytest.mark.parametrize(
    ("sizes", "fit"),
    [([2048, 2030], 2), ([2048, 2031], 1), ([1500] * 3, 2), ([600] * 8, 6), ([100] * 12, 8)],
)
def test_what_the_host_packs_in_one_exchange_the_card_takes(sizes: list[int], fit: int) -> None:
    """The packing rule is the card's: all it allows (bytes and count), never a 6700."""
    _, channel, key = _card("coaps://127.0.0.1:9/open")
    datagrams = [bytes(n) for n in sizes]
    assert c.datagrams_in_one_exchange(datagrams) == fit
    channel.begin(key.container_id, 0.0)
    step = channel.feed(datagrams[:fit], 0.0)  # zeros are no DTLS: dropped, still running
    assert step.failure is None and not step.finished
    if fit < min(len(sizes), c.MAX_DATAGRAMS_IN):  # one more would not fit: the card says so
        with pytest.raises(CardError, match="6700"):
            channel.feed(datagrams[: fit + 1], 0.0)


async def test_a_card_lost_after_the_request_went_out_is_unknown() -> None:
    """The card leaves the reader once the lock has the request (cards._pcsc raises
    CardMissingError then): the door may be open, and the answer must say so."""
    door = SilentDoor()
    transport, port = await _lock(door, lambda data, request: [])
    applet, _, key = _card(f"coaps://127.0.0.1:{port}/open")

    def transmit(apdu: bytes) -> bytes:
        if door.requests:
            raise CardMissingError("lost the card in Virtual PCD 00 00: Transaction failed.")
        return applet.process(apdu)

    channel = AppletChannel(transmit)
    try:
        with pytest.raises(OutcomeUnknownError, match="the door may be open") as info:
            await open_door(channel, key, timeout=3, retransmit=0.05)
    finally:
        transport.close()
    assert "lost the card" in str(info.value)


async def test_an_open_ended_under_the_host_is_not_called_an_expired_key() -> None:
    """A card reset in the middle of the handshake (the applet deselected, its Open gone):
    DATAGRAMS answers 6985, which is no statement about the key's validity."""
    transport, port = await _lock(CoapResponder(), lambda data, request: [])
    applet, _, key = _card(f"coaps://127.0.0.1:{port}/open")
    exchanges = 0

    def transmit(apdu: bytes) -> bytes:
        nonlocal exchanges
        exchanges += 1
        if exchanges == 3:  # SELECT, OPEN, then the reader resets the card
            applet.reset()
        return applet.process(apdu)

    channel = AppletChannel(transmit)
    try:
        with pytest.raises(CardError) as info:
            await open_door(channel, key, timeout=3, retransmit=0.05)
    finally:
        transport.close()
    assert "validity" not in str(info.value) and "Open" in str(info.value), str(info.value)
