"""ISO 7816-4 command and response APDUs, parsed strictly.

A card sees raw bytes from an untrusted host, so the parser accepts exactly the
encodings of section 5.1 (cases 1, 2S, 3S, 4S, 2E, 3E, 4E) and raises
``WrongLengthError`` (6700) for anything else: a length byte that disagrees with the
bytes present, Lc = 0 in extended form, trailing bytes. ``Le`` is kept as the
number of bytes the host accepts (short 00 means 256, extended 0000 means
65536) and ``None`` when the field is absent, so handlers never see encodings.
"""

from __future__ import annotations

from dataclasses import dataclass

from elock_common.apdu import EXTENDED_MAX, SHORT_MAX, encode_command
from firmware.errors import WrongLengthError


@dataclass(frozen=True)
class ApduCommand:
    """One command APDU; ``data`` may be empty, ``le`` is None when absent."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be one byte")
        if self.extended and not self.data and self.le is None:
            raise ValueError("a case 1 command has no extended form")
        limit = EXTENDED_MAX - 1 if self.extended else SHORT_MAX - 1
        if len(self.data) > limit:
            raise ValueError("data field too long for this length form")
        if self.le is not None and not 1 <= self.le <= (
            EXTENDED_MAX if self.extended else SHORT_MAX
        ):
            raise ValueError("Le out of range for this length form")

    def __repr__(self) -> str:
        # Data may hold a PIN or sealed key material: show only its size.
        return (
            f"ApduCommand(cla=0x{self.cla:02X}, ins=0x{self.ins:02X}, p1=0x{self.p1:02X}, "
            f"p2=0x{self.p2:02X}, data=<{len(self.data)} bytes>, le={self.le}, "
            f"extended={self.extended})"
        )

    @property
    def p1p2(self) -> int:
        return self.p1 << 8 | self.p2

    @property
    def case(self) -> int:
        """ISO case number 1..4 (short and extended alike)."""
        return 1 + (self.le is not None) + 2 * bool(self.data)

    @classmethod
    def parse(cls, raw: bytes) -> ApduCommand:
        """Decode *raw* or raise ``WrongLengthError``; never accepts a sloppy encoding."""
        n = len(raw)
        if n < 4:
            raise WrongLengthError("command shorter than its header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        b1 = raw[4]
        if n == 5:  # case 2S
            return cls(cla, ins, p1, p2, le=b1 or SHORT_MAX)
        if b1 != 0:  # short Lc
            if n == 5 + b1:
                return cls(cla, ins, p1, p2, bytes(raw[5:]))
            if n == 6 + b1:
                return cls(cla, ins, p1, p2, bytes(raw[5:-1]), le=raw[-1] or SHORT_MAX)
            raise WrongLengthError("short Lc disagrees with the command length")
        if n == 7:  # case 2E
            return cls(cla, ins, p1, p2, le=_ext(raw[5:7]), extended=True)
        if n < 8:
            raise WrongLengthError("truncated extended length")
        lc = int.from_bytes(raw[5:7], "big")
        if lc == 0:
            raise WrongLengthError("extended Lc of zero")
        if n == 7 + lc:
            return cls(cla, ins, p1, p2, bytes(raw[7:]), extended=True)
        if n == 9 + lc:
            return cls(cla, ins, p1, p2, bytes(raw[7:-2]), le=_ext(raw[-2:]), extended=True)
        raise WrongLengthError("extended Lc disagrees with the command length")

    def encode(self) -> bytes:
        """The wire form; the inverse of ``parse``."""
        return encode_command(
            self.cla, self.ins, self.p1, self.p2, self.data, self.le, extended=self.extended
        )


def _ext(two: bytes) -> int:
    return int.from_bytes(two, "big") or EXTENDED_MAX


@dataclass(frozen=True)
class ApduResponse:
    """A response APDU: data then SW1 SW2."""

    data: bytes
    sw: int

    def __repr__(self) -> str:
        return f"ApduResponse(data=<{len(self.data)} bytes>, sw=0x{self.sw:04X})"

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @classmethod
    def parse(cls, raw: bytes) -> ApduResponse:
        if len(raw) < 2:
            raise ValueError("a response APDU ends in two status bytes")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")


def command(
    cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"", le: int | None = None
) -> bytes:
    """Build a command, choosing extended form only when short form cannot hold it."""
    return encode_command(cla, ins, p1, p2, data, le)
