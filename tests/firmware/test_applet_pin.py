"""VERIFY: the try counter, blocking, the verified state and its one-Open lifetime."""

from __future__ import annotations

from elock_common import card_protocol as c
from elock_common.container import Flags
from firmware.apdu import command
from firmware.virtual import host
from tests.firmware.helpers import NOW_MS, PIN, SELECT, container, make_card


def verify(pin: bytes = b"", p1: int = 0) -> bytes:
    return command(c.CLA_ISO, c.INS_VERIFY, p1, c.P2_PIN_CARD, pin)


def test_wrong_pins_block_and_right_pin_resets() -> None:
    card = make_card(tries=3)
    assert card.tx(verify()) == b"\x63\xc3"  # no data: tries left
    assert card.tx(verify(b"0000")) == b"\x63\xc2"
    assert card.tx(verify(PIN)) == b"\x90\x00"
    assert card.tx(verify()) == b"\x90\x00"  # verified
    assert card.tx(verify(b"0000")) == b"\x63\xc2"  # a failed try drops the verified state
    assert card.tx(verify(b"1111")) == b"\x63\xc1"
    assert card.tx(verify(b"2222")) == b"\x63\xc0"
    assert card.tx(verify(PIN)) == b"\x69\x83"  # blocked, even for the right PIN
    assert card.tx(verify()) == b"\x69\x83"
    card.power_up().selected()
    assert card.tx(verify(PIN)) == b"\x69\x83"  # blocked survives power loss
    host.set_pin(card.tx, card.transport_key, b"24680", 5)  # personalization unblocks
    assert card.tx(verify()) == b"\x63\xc5"
    assert card.tx(verify(b"24680")) == b"\x90\x00"


def test_pin_format_and_parameters() -> None:
    card = make_card()
    for bad in (b"123", b"123456789", b"12a4"):
        assert card.tx(verify(bad)) == b"\x6a\x80"
    assert card.tx(verify()) == b"\x63\xc3"  # malformed PINs cost no try
    assert card.tx(command(0, c.INS_VERIFY, 0, 0x80, PIN)) == b"\x6a\x86"
    assert card.tx(command(0, c.INS_VERIFY, 1, 0x81, PIN)) == b"\x6a\x86"
    assert card.tx(command(0, c.INS_VERIFY, 0, 0x81, PIN, le=4)) == b"\x67\x00"
    assert card.tx(verify(PIN, p1=0xFF)) == b"\x67\x00"


def test_verified_state_ends_with_ff_reset_and_select() -> None:
    card = make_card()
    for end in (verify(p1=0xFF), SELECT):
        assert card.tx(verify(PIN)) == b"\x90\x00"
        assert card.tx(end) == b"\x90\x00"
        assert card.tx(verify()) == b"\x63\xc3"
    assert card.tx(verify(PIN)) == b"\x90\x00"
    card.applet.reset()
    card.selected()
    assert card.tx(verify()) == b"\x63\xc3"


def test_card_without_pin() -> None:
    card = make_card(pin=None)
    assert card.tx(verify(PIN)) == b"\x6a\x88"
    assert card.tx(verify()) == b"\x6a\x88"


def test_one_verification_opens_one_door() -> None:
    card = make_card()
    cid = card.install(container(0, flags=Flags.PIN_REQUIRED))
    other = card.install(container(1))
    try:
        host.open_begin(card.tx, cid, NOW_MS)
        raise AssertionError("opened without a PIN")
    except host.CardError as exc:
        assert exc.sw == 0x6982
    assert host.open_begin(card.tx, other, NOW_MS).state == c.STATE_RUNNING  # no PIN needed
    assert card.tx(verify(PIN)) == b"\x90\x00"
    assert host.open_begin(card.tx, cid, NOW_MS).state == c.STATE_RUNNING
    assert card.tx(verify()) == b"\x63\xc3"  # spent by that Open
    try:
        host.open_begin(card.tx, cid, NOW_MS)
        raise AssertionError("one verification opened twice")
    except host.CardError as exc:
        assert exc.sw == 0x6982
