"""Encoding command APDUs (ISO 7816-4 5.1), for every part that talks to a card.

The key host, the key server (through RACS) and the applet's own tests build
commands with this one encoder; the applet parses them (``firmware.apdu``).
Short form unless the data or Le cannot fit, as ISO 7816-4 prefers.
"""

from __future__ import annotations

SHORT_MAX = 256
EXTENDED_MAX = 65536


def encode_command(
    cla: int,
    ins: int,
    p1: int = 0,
    p2: int = 0,
    data: bytes = b"",
    le: int | None = None,
    *,
    extended: bool | None = None,
) -> bytes:
    """One command APDU; ``le`` is the number of bytes accepted (256 / 65536 for "all")."""
    if extended is None:
        extended = len(data) > SHORT_MAX - 1 or (le is not None and le > SHORT_MAX)
    out = bytearray((cla, ins, p1, p2))
    if extended:
        out.append(0)
        if data:
            out += len(data).to_bytes(2, "big") + data
        if le is not None:
            out += (le % EXTENDED_MAX).to_bytes(2, "big")
    else:
        if data:
            out.append(len(data))
            out += data
        if le is not None:
            out.append(le % SHORT_MAX)
    return bytes(out)
