"""The vpcd protocol of the virtual card, against a stand-in for pcscd's driver.

A local TCP listener plays the vpcd driver, so the framing, the control bytes,
the save-before-answer order and reconnection are checked byte for byte;
test_vpcd.py then shows the same card working behind the real pcscd.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from elock_common import card_protocol as c
from firmware.virtual import vpcd
from firmware.virtual.vpcd import VirtualCard
from tests.firmware.helpers import SELECT, make_card


class FakeDriver:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        if self.conn is not None:
            self.conn.close()
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(5)
        return self.conn

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(struct.pack(">H", len(payload)) + payload)

    def recv(self) -> bytes:
        assert self.conn is not None
        (n,) = struct.unpack(">H", self._exact(2))
        return self._exact(n)

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            assert chunk, "card closed the connection"
            data += chunk
        return data

    def transmit(self, apdu: bytes) -> bytes:
        self.send(apdu)
        return self.recv()


@pytest.fixture
def rig() -> Iterator[tuple[FakeDriver, VirtualCard, list[str]]]:
    driver = FakeDriver()
    card = make_card(containers=1)
    events: list[str] = []
    vcard = VirtualCard(card.applet, port=driver.port, after_apdu=lambda: events.append("saved"))
    thread = threading.Thread(target=vcard.run, daemon=True)
    thread.start()
    driver.accept()
    yield driver, vcard, events
    vcard.stop()
    thread.join(5)
    driver.listener.close()
    if driver.conn is not None:
        driver.conn.close()
    assert not thread.is_alive()


def test_atr_apdus_and_power_controls(rig: tuple[FakeDriver, VirtualCard, list[str]]) -> None:
    driver, vcard, events = rig
    driver.send(b"\x04")
    assert driver.recv() == c.ATR
    driver.send(b"\x01")  # power on: no answer, the next message is ours
    assert driver.transmit(SELECT) == b"\x90\x00"
    assert driver.transmit(bytes.fromhex("8030000000"))[-2:] == b"\x90\x00"
    assert events == ["saved", "saved"] and vcard.apdus == 2
    driver.send(b"\x02")  # reset: RAM state gone, so LIST needs a SELECT again
    assert driver.transmit(bytes.fromhex("8030000000")) == b"\x69\x85"
    assert driver.transmit(b"\x09") == b"\x67\x00"  # no control code: a 1-byte APDU
    driver.send(b"\x00")  # power off
    assert driver.transmit(b"") == b"\x67\x00"  # a zero-length APDU is still answered


def test_a_one_byte_apdu_that_looks_like_a_control_is_answered(
    rig: tuple[FakeDriver, VirtualCard, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """[00] is power off or an APDU; a driver that then sends nothing is waiting for an answer."""
    monkeypatch.setattr(vpcd, "AMBIGUOUS_WAIT", 0.2)
    driver, _, _ = rig
    assert driver.transmit(SELECT) == b"\x90\x00"
    assert driver.transmit(b"\x00") == b"\x67\x00"
    assert driver.transmit(bytes.fromhex("8030000000")) == b"\x69\x85"  # it did reset the card
    driver.send(b"\x01")  # a real power on, followed at once by GET ATR: no extra answer
    driver.send(b"\x04")
    assert driver.recv() == c.ATR
    assert driver.transmit(SELECT) == b"\x90\x00"


def test_reconnects_when_the_driver_goes_away(
    rig: tuple[FakeDriver, VirtualCard, list[str]],
) -> None:
    driver, _, _ = rig
    assert driver.transmit(SELECT) == b"\x90\x00"
    assert driver.conn is not None
    driver.conn.close()  # pcscd restarted
    driver.accept()
    assert driver.transmit(bytes.fromhex("8030000000")) == b"\x69\x85"  # a fresh power-up
    assert driver.transmit(SELECT) == b"\x90\x00"
