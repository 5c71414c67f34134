"""Encoding command APDUs (ISO 7816-4 5.1), for every part that talks to a card.

The key host, the key server (through RACS) and the applet's own tests build
commands with this one encoder; the applet parses them (``firmware.apdu``).
Short form unless the data or Le cannot fit, as ISO 7816-4 prefers.
"""

from __future__ import annotations

from collections.abc import Callable

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


MAX_CHAINED_RESPONSES = 64
_GET_RESPONSE_CLA, _GET_RESPONSE_INS = 0x00, 0xC0


def exchange(transmit: Callable[[bytes], bytes], command: bytes) -> tuple[bytes, int]:
    """Send ``command``, follow 61xx with GET RESPONSE, return (all data, final status word).

    A response shorter than a status word counts as 6F00, so callers only ever
    see a well-formed status word.
    """
    response = transmit(command)
    body = bytearray(response[:-2])
    for _ in range(MAX_CHAINED_RESPONSES):
        if len(response) < 2 or response[-2] != 0x61:
            break
        response = transmit(
            encode_command(_GET_RESPONSE_CLA, _GET_RESPONSE_INS, le=response[-1] or SHORT_MAX)
        )
        body += response[:-2]
    sw = int.from_bytes(response[-2:], "big") if len(response) >= 2 else 0x6F00
    return bytes(body), sw
