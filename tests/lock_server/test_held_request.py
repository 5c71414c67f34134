"""The real lock process, the in-process applet, and a link that holds datagrams back.

Found by a reviewer on a lossy link: the lock kept an Open's DTLS session with no
bound once its handshake was done, so a request the link held back (its close_notify
lost) opened the door whenever it was delivered, long after the key host had said
"the door may be open"; and a held request landing with the retry tap's was two opens.
Now a session carries requests for ``lock.session_seconds`` after its handshake, and
the lock decides one open at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from elock_testkit.applet_card import applet_with_key
from elock_testkit.lockproc import Key, LockProcess
from elock_testkit.lossy_relay import content_types
from firmware.applet import Applet
from key_client.cards import AppletChannel
from key_client.carrier import open_door
from key_client.channel import KeyInfo
from key_client.errors import OutcomeUnknownError

SESSION_SECONDS = 2.0  # lock.session_seconds here (30 s by default)
HOLD_SECONDS = 4.0  # the held request comes after the session's end

pytestmark = [pytest.mark.peer, pytest.mark.slow]

Rule = Callable[[str, bytes], bool]  # (direction, datagram) -> forward it?


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[LockProcess]:
    lock = LockProcess.create(tmp_path / "lock", open_seconds=0.5)
    text = lock.config.read_text().replace(
        "open_seconds = 0.5", f"open_seconds = 0.5\nsession_seconds = {SESSION_SECONDS}"
    )
    lock.config.write_text(text)
    with lock:
        yield lock


def _card(uri: str, key: Key) -> tuple[Applet, AppletChannel, KeyInfo]:
    return applet_with_key(uri, key.identity.encode(), key.psk.encode())


class Link(asyncio.DatagramProtocol):
    """client <-> lock on loopback; ``rule`` decides what is forwarded now."""

    def __init__(self, lock_port: int, rule: Rule) -> None:
        self.lock_port, self.rule = lock_port, rule
        self.client: tuple[str, int] | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        link = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if link.client is not None and link.rule("down", data):
                    link.front.sendto(data, link.client)

        self.front, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.back, _ = await loop.create_datagram_endpoint(
            Back, remote_addr=("127.0.0.1", self.lock_port)
        )
        return int(self.front.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = addr
        if self.rule("up", data):
            self.back.sendto(data)

    def deliver(self, data: bytes) -> None:
        """A datagram the link held back, delivered now (from the client's mapping)."""
        self.back.sendto(data)

    def close(self) -> None:
        self.front.close()
        self.back.close()


def _holding(held: list[bytes]) -> Rule:
    """Holds back the CoAP request (application data up) and loses the close_notify."""

    def rule(direction: str, data: bytes) -> bool:
        types = content_types(data)
        if direction == "up" and 23 in types:
            held.append(data)
            return False
        return not (direction == "up" and 21 in types)

    return rule


async def _open_with_request_held(lock: LockProcess, key: Key) -> tuple[Link, list[bytes]]:
    held: list[bytes] = []
    link = Link(lock.port, _holding(held))
    port = await link.start()
    applet, channel, info = _card(f"coaps://127.0.0.1:{port}/lock", key)
    with pytest.raises(OutcomeUnknownError, match="the door may be open"):
        await open_door(channel, info, timeout=5, retransmit=0.1)
    assert held and applet.opener.session is None
    assert lock.relay_events().count("on") == 0
    return link, held


async def test_a_request_held_back_long_after_the_open_ended_does_not_open(
    lock: LockProcess,
) -> None:
    """The delay attack: the person was told "the door may be open, check", checked, and
    left; the link delivers the held request 100 s later and the door opens for nobody.
    The lock keeps the Open's DTLS session (the close_notify was lost) with no bound on
    how long after its handshake a request is still taken."""
    link, held = await _open_with_request_held(lock, lock.mint("--one-time"))
    try:
        await asyncio.sleep(HOLD_SECONDS)
        link.deliver(held[0])
        await asyncio.sleep(1.0)
    finally:
        link.close()
    assert lock.relay_events().count("on") == 0, "a request held back 100 s opened the door"


async def test_held_request_arriving_with_the_retry_tap_is_one_open(lock: LockProcess) -> None:
    """Open #1's request is held (its host said "unknown"), the person taps again, and the
    held request lands together with Open #2's: the lock's own rule makes a key's second
    tap while the door is open from its first one open with one use. A few ms apart it is;
    together, both are granted: two relay energizations, two uses of a 2-use key."""
    key = lock.mint("--uses", "2")
    first, held = await _open_with_request_held(lock, key)

    def with_held(direction: str, data: bytes) -> bool:
        if direction == "up" and 23 in content_types(data):
            first.deliver(held[0])  # the held request arrives just as this one does
        return True

    second = Link(lock.port, with_held)
    port = await second.start()
    _, channel, info = _card(f"coaps://127.0.0.1:{port}/lock", key)
    try:
        outcome = await open_door(channel, info, timeout=5, retransmit=0.1)
        await asyncio.sleep(1.0)
    finally:
        first.close()
        second.close()
    assert outcome.code == "2.04"
    granted = [r for r in lock.audit() if r["action"] == "open" and r["outcome"] == "granted"]
    assert lock.relay_events().count("on") == 1, "the relay was energized twice for one open"
    assert len(granted) == 1, "two uses charged for one open"


async def test_one_time_key_retry_is_not_refused_while_the_door_opens(lock: LockProcess) -> None:
    """As above with a one-time key: the person at the door is told "refused: one-time key
    already used" while the relay fires for the held request of the same person's tap."""
    key = lock.mint("--one-time")
    first, held = await _open_with_request_held(lock, key)

    def with_held(direction: str, data: bytes) -> bool:
        if direction == "up" and 23 in content_types(data):
            first.deliver(held[0])
        return True

    second = Link(lock.port, with_held)
    port = await second.start()
    _, channel, info = _card(f"coaps://127.0.0.1:{port}/lock", key)
    try:
        outcome = await open_door(channel, info, timeout=5, retransmit=0.1)  # raises RefusedError
    finally:
        first.close()
        second.close()
    assert outcome.code == "2.04"
