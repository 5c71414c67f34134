"""The seed's APDU algorithm against the test applet: 6Cxx, 61xx, bounds, SELECT parsing."""

from __future__ import annotations

import pytest

from elock_testkit.racs_applets import FIXED, TestApplet
from racs.apdu import exchange, selected_aid
from racs.errors import ExecutionError, HardwareError, RacsSyntaxError
from racs.protocol import ApduOptions


async def run(applet: TestApplet, apdu: bytes, options: ApduOptions | None = None) -> bytes:
    async def transmit(command: bytes) -> bytes:
        return applet.process(command)

    return await exchange(transmit, apdu, options)


async def test_6cxx_resends_once_with_the_right_le() -> None:
    applet = TestApplet()
    assert await run(applet, bytes.fromhex("0002000000")) == FIXED + b"\x90\x00"
    assert applet.received == [bytes.fromhex("0002000000"), bytes.fromhex("000200000A")]


async def test_6cxx_is_not_chased_for_a_command_with_data() -> None:
    applet = TestApplet()
    assert await run(applet, bytes.fromhex("00020000010100")) == b"\x6c\x0a"


async def test_61xx_fetches_and_concatenates() -> None:
    applet = TestApplet()
    response = await run(applet, bytes.fromhex("0003012C"))  # 300 bytes
    assert response == bytes(i & 0xFF for i in range(300)) + b"\x90\x00"
    assert [c[1] for c in applet.received] == [0x03, 0xC0, 0xC0]
    assert applet.received[1] == bytes.fromhex("00C0000000")  # 61 00: 256 more


async def test_custom_fetch_header_and_continue() -> None:
    applet = TestApplet()
    opts = ApduOptions(expect_sw=0x9000, fetch=bytes.fromhex("00C00000"))
    assert (await run(applet, bytes.fromhex("00030005"), opts))[-2:] == b"\x90\x00"
    with pytest.raises(ExecutionError) as info:
        await run(applet, bytes.fromhex("00FF0000"), opts)
    assert info.value.wire_code() == "-006"


async def test_a_card_stuck_in_61xx_is_cut_off() -> None:
    with pytest.raises(HardwareError):
        await run(TestApplet(), bytes.fromhex("00040000"))


async def test_a_card_without_status_word_is_a_hardware_error() -> None:
    async def transmit(command: bytes) -> bytes:
        return b"\x90"

    with pytest.raises(HardwareError):
        await exchange(transmit, b"\x00\x01\x00\x00")


def test_selected_aid() -> None:
    assert selected_aid(bytes.fromhex("00A4040007A000000004101000")) == bytes.fromhex(
        "A0000000041010"
    )
    assert selected_aid(bytes.fromhex("84A4040002A00000")) == bytes.fromhex("A000")
    assert selected_aid(bytes.fromhex("00A40400")) == b""
    assert selected_aid(bytes.fromhex("00A4000C023F00")) is None
    assert selected_aid(bytes.fromhex("00B0000000")) is None
    assert selected_aid(bytes.fromhex("00A40400000002A000")) == bytes.fromhex("A000")
    with pytest.raises(RacsSyntaxError):
        selected_aid(bytes.fromhex("00A4040005A0"))
