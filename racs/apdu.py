"""The seed's APDU algorithm ("APDU Command": 6Cxx and 61xx), and APDU facts we check.

A RACS client sends one command APDU and gets its response back. Depending
on the request's options and the server's style (:mod:`racs.style`) the
server, not the client, repeats a short Le-only request with the right Le when
the card answers ``6C xx``, and fetches the rest of a response with the
``FETCH=`` header while the card answers ``MORE=`` (``61 xx``), concatenating
the bodies. Doing it server side saves the round trips over the internet that
the seed's "Transparent Mode" slide measures at about 250 ms each.

Every command the loop sends is one the client chose (``FETCH=`` is a header
of its choosing), so each goes through the caller's ``transmit``, which the
service makes run the same access check as the request's own APDU. The loop
is bounded (rounds and bytes) so that a card stuck in ``61 xx``, or a
``MORE=`` that matches every answer, cannot keep a session, and the server,
busy forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from racs.errors import CommandCode, ExecutionError, HardwareError, RacsSyntaxError
from racs.protocol import ApduOptions
from racs.style import Chaining, ServerStyle

Transmit = Callable[[bytes], Awaitable[bytes]]

MAX_ROUNDS = 256
MAX_BODY = 1 << 16
INS_SELECT = 0xA4
P1_SELECT_BY_NAME = 0x04


async def exchange(
    transmit: Transmit,
    apdu: bytes,
    options: ApduOptions | Chaining | None = None,
    *,
    max_rounds: int = MAX_ROUNDS,
    max_body: int = MAX_BODY,
) -> bytes:
    """Run one APDU through *transmit* per the seed's algorithm; body || SW.

    Plain :class:`ApduOptions` run as the ``elock`` style does. Raises
    :class:`ExecutionError` when ``CONTINUE=`` named a status word and the
    final one differs, :class:`HardwareError` when the card misbehaves.
    """
    if not isinstance(options, Chaining):
        options = ServerStyle.ELOCK.chaining(options or ApduOptions())
    body = bytearray()
    request = apdu
    first = True
    for _ in range(max_rounds):
        response = await transmit(request)
        if len(response) < 2:
            raise HardwareError("the card answered without a status word", CommandCode.APDU)
        data, sw1, sw2 = response[:-2], response[-2], response[-1]
        wrong_le = first and options.resend_wrong_le and sw1 == 0x6C and sw2 != 0
        if wrong_le and len(request) == 5 and not data:
            request = request[:4] + bytes([sw2])  # wrong Le: resend once with P3 = SW2
            first = False
            continue
        first = False
        body += data
        if len(body) > max_body:
            raise HardwareError(f"response longer than {max_body} bytes", CommandCode.APDU)
        if sw1 == options.more:
            request = options.fetch + bytes([sw2])
            continue
        sw = sw1 << 8 | sw2
        if options.expect_sw is not None and sw != options.expect_sw:
            raise ExecutionError(
                f"status {sw:04X}, expected {options.expect_sw:04X}", CommandCode.APDU
            )
        return bytes(body) + bytes([sw1, sw2])
    raise HardwareError(f"no final status after {max_rounds} exchanges", CommandCode.APDU)


def selected_aid(apdu: bytes) -> bytes | None:
    """The AID if *apdu* is a SELECT by DF name (INS A4, P1 04), else None.

    Every CLA counts, proprietary ones included, so that no class byte can
    slip a SELECT past the AID check. Short and extended Lc are both read.
    """
    if len(apdu) < 4 or apdu[1] != INS_SELECT or apdu[2] != P1_SELECT_BY_NAME:
        return None
    if len(apdu) <= 5:
        return b""  # no data field: selects the default application
    if apdu[4] != 0:
        start, lc = 5, apdu[4]
    elif len(apdu) >= 7:
        start, lc = 7, int.from_bytes(apdu[5:7], "big")
    else:
        raise RacsSyntaxError("malformed extended-length SELECT", CommandCode.APDU)
    if len(apdu) < start + lc:
        raise RacsSyntaxError("SELECT data shorter than its Lc", CommandCode.APDU)
    return apdu[start : start + lc]


def status_ok(response: bytes) -> bool:
    """True for 9000 and the 62xx warnings a SELECT may still succeed with."""
    return len(response) >= 2 and (response[-2] == 0x62 or response[-2:] == b"\x90\x00")
