"""The datagram carrier with a scripted channel and real UDP sockets (unit test)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from key_client.carrier import lock_address, open_door
from key_client.channel import KeyInfo, OpenStep
from key_client.errors import RefusedError, UnreachableError


class ScriptedChannel:
    """Sends 'hello', expects the server's two-datagram flight in ONE feed, then finishes."""

    def __init__(self, final: OpenStep, timer: float = 0.2) -> None:
        self.final, self.timer = final, timer
        self.fed: list[list[bytes]] = []
        self.timeouts = 0
        self.aborted = False

    def keys(self) -> list[KeyInfo]:
        return []

    def verify_pin(self, pin: str) -> None:
        pass

    def begin(self, container_id: int, now: float) -> OpenStep:
        return OpenStep(datagrams=[b"hello"], timer=now + self.timer)

    def feed(self, datagrams: list[bytes], now: float) -> OpenStep:
        self.fed.append(datagrams)
        return self.final

    def timeout(self, now: float) -> OpenStep:
        self.timeouts += 1
        return OpenStep(datagrams=[b"hello again"], timer=now + self.timer)

    def abort(self) -> None:
        self.aborted = True


class FlightServer(asyncio.DatagramProtocol):
    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.seen: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen.append(data)
        for n in range(self.answers):
            self.transport.sendto(b"flight-%d" % n, addr)  # type: ignore[attr-defined]


async def _server(
    answers: int, family: int = socket.AF_INET
) -> tuple[asyncio.DatagramTransport, FlightServer, int]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: FlightServer(answers), local_addr=(host, 0)
    )
    return transport, proto, transport.get_extra_info("sockname")[1]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
async def test_a_flight_is_fed_in_one_exchange(family: int) -> None:
    transport, _, port = await _server(2, family)
    host = "[::1]" if family == socket.AF_INET6 else "127.0.0.1"
    channel = ScriptedChannel(OpenStep(code="2.04", payload=b"opened"))
    key = KeyInfo(1, "door", f"coaps://{host}:{port}/lock")
    outcome = await open_door(channel, key, timeout=3)
    transport.close()
    assert channel.fed == [[b"flight-0", b"flight-1"]]
    assert (outcome.code, outcome.message, outcome.exchanges, outcome.sent, outcome.received) == (
        "2.04",
        "opened",
        2,
        1,
        2,
    )


async def test_silence_retransmits_then_gives_up_in_time() -> None:
    transport, server, port = await _server(0)
    channel = ScriptedChannel(OpenStep(code="2.04"), timer=0.1)
    began = time.monotonic()
    with pytest.raises(UnreachableError, match="no answer from the lock"):
        await open_door(channel, KeyInfo(1, "door", f"coaps://localhost:{port}/lock"), timeout=0.55)
    transport.close()
    assert 0.5 <= time.monotonic() - began < 1.5
    assert channel.timeouts >= 3 and channel.aborted
    assert server.seen[0] == b"hello" and b"hello again" in server.seen


async def test_refusal_carries_the_locks_reason() -> None:
    transport, _, port = await _server(1)
    channel = ScriptedChannel(OpenStep(code="4.01", payload=b"key revoked"))
    with pytest.raises(RefusedError) as info:
        await open_door(channel, KeyInfo(1, "door", f"coaps://127.0.0.1:{port}/lock"), timeout=3)
    transport.close()
    assert (info.value.code, info.value.reason, info.value.exit_status) == (
        "4.01",
        "key revoked",
        3,
    )


async def test_unresolvable_host_is_unreachable() -> None:
    channel = ScriptedChannel(OpenStep(code="2.04"))
    with pytest.raises(UnreachableError, match="cannot resolve"):
        await open_door(channel, KeyInfo(1, "door", "coaps://no-such-host.invalid/lock"), timeout=2)


def test_lock_address() -> None:
    assert lock_address("coaps://[2001:db8::1]:6000/lock") == ("2001:db8::1", 6000)
    assert lock_address("coaps://door.example/lock") == ("door.example", 5684)
    with pytest.raises(UnreachableError):
        lock_address("http://door/lock")


@pytest.mark.parametrize(
    ("step", "refused"),
    [
        (OpenStep(failure="handshake failed (alert 51)", alert=51), True),
        # The word in a reason is no alert: only the card's alert field says the lock refused.
        (OpenStep(failure="no alert received, retries used up"), False),
    ],
)
async def test_a_card_alert_travels_as_a_field(step: OpenStep, refused: bool) -> None:
    transport, _, port = await _server(1)
    key = KeyInfo(1, "door", f"coaps://127.0.0.1:{port}/lock")
    with pytest.raises(RefusedError if refused else UnreachableError) as info:
        await open_door(ScriptedChannel(step), key, timeout=3)
    transport.close()
    if refused:
        assert isinstance(info.value, RefusedError)
        assert (info.value.code, info.value.alert) == ("handshake", 51)
