"""ISO 7816-4 APDU parsing: every case, both length forms, and the encodings it must refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.apdu import ApduCommand, ApduResponse, command
from firmware.errors import WrongLengthError

H = bytes.fromhex


@pytest.mark.parametrize(
    ("raw", "data", "le", "extended", "case"),
    [
        (H("80300000"), b"", None, False, 1),
        (H("8030000010"), b"", 16, False, 2),
        (H("8030000000"), b"", 256, False, 2),
        (H("8030000002AABB"), H("AABB"), None, False, 3),
        (H("8030000002AABB00"), H("AABB"), 256, False, 4),
        (H("803000000000FF"), b"", 255, True, 2),
        (H("80300000000000"), b"", 65536, True, 2),
        (H("80300000000002AABB"), H("AABB"), None, True, 3),
        (H("80300000000002AABB0100"), H("AABB"), 256, True, 4),
        (H("80300000000002AABB0000"), H("AABB"), 65536, True, 4),
    ],
)
def test_cases(raw: bytes, data: bytes, le: int | None, extended: bool, case: int) -> None:
    cmd = ApduCommand.parse(raw)
    assert (cmd.cla, cmd.ins, cmd.p1p2) == (0x80, 0x30, 0)
    assert (cmd.data, cmd.le, cmd.extended, cmd.case) == (data, le, extended, case)
    assert cmd.encode() == raw


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        H("80"),
        H("803000"),
        H("8030000003AABB"),  # Lc 3, two bytes
        H("8030000002AABB0000"),  # one byte too many for case 4S
        H("803000000000"),  # extended marker with one byte
        H("80300000000000AA"),  # 2E followed by junk
        H("8030000000000000"),  # extended Lc 0 with a body
        H("8030000000000000AA"),  # extended Lc of zero
        H("80300000000003AABB"),  # extended Lc 3, two bytes
        H("80300000000001AA00"),  # extended 4E with a one-byte Le
    ],
)
def test_refuses_malformed(raw: bytes) -> None:
    with pytest.raises(WrongLengthError) as info:
        ApduCommand.parse(raw)
    assert info.value.sw == 0x6700


def test_command_builder_picks_the_form() -> None:
    assert command(0, 0xA4, 4, 0, b"\x01") == H("00A404000101")
    assert command(0x80, 0x30, le=256) == H("8030000000")
    long = command(0x80, 0x30, data=bytes(300), le=16)
    assert long[4] == 0 and ApduCommand.parse(long).extended
    assert ApduCommand.parse(command(0x80, 0x30, le=4096)).le == 4096


def test_construction_checks() -> None:
    with pytest.raises(ValueError):
        ApduCommand(0x100, 0, 0, 0)
    with pytest.raises(ValueError):
        ApduCommand(0, 0, 0, 0, bytes(256))
    with pytest.raises(ValueError):
        ApduCommand(0, 0, 0, 0, extended=True)
    with pytest.raises(ValueError):
        ApduCommand(0, 0, 0, 0, le=0)


def test_repr_hides_data() -> None:
    text = repr(ApduCommand(0, 0x20, 0, 0x81, b"1234"))
    assert "1234" not in text and "4 bytes" in text
    assert "AABB" not in repr(ApduResponse(H("AABB"), 0x9000)).upper()


def test_response() -> None:
    r = ApduResponse.parse(H("01029000"))
    assert (r.data, r.sw, r.sw1, r.sw2) == (H("0102"), 0x9000, 0x90, 0x00)
    assert r.encode() == H("01029000")
    with pytest.raises(ValueError):
        ApduResponse.parse(b"\x90")


@st.composite
def commands(draw: st.DrawFn) -> ApduCommand:
    extended = draw(st.booleans())
    data = draw(st.binary(max_size=300 if extended else 255))
    le = draw(st.none() | st.integers(1, 65536 if extended else 256))
    if extended and not data and le is None:
        extended = False
    if not extended and len(data) > 255:
        data = data[:255]
    header = draw(st.tuples(*[st.integers(0, 255)] * 4))
    return ApduCommand(*header, data=data, le=le, extended=extended)


@given(commands())
def test_round_trip(cmd: ApduCommand) -> None:
    assert ApduCommand.parse(cmd.encode()) == cmd


@given(st.binary(max_size=600))
def test_parse_only_raises_wrong_length(raw: bytes) -> None:
    try:
        cmd = ApduCommand.parse(raw)
    except WrongLengthError:
        return
    assert cmd.encode() == raw  # anything accepted is canonical
