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
GET_RESPONSE_HEADER = bytes((0x00, 0xC0, 0x00, 0x00))
SW1_MORE_DATA, SW1_WRONG_LE = 0x61, 0x6C


class ResponseChain:
    """One command's whole answer across 61xx (GET RESPONSE) and 6Cxx (wrong Le), sans-I/O.

    Feed each response to :meth:`receive`; it returns the next command to send
    (a GET RESPONSE, or the command again with the Le the card asked for) or
    None once the answer is complete, then ``data`` and ``sw`` hold it. Kept
    free of I/O so that a card in this process, behind PC/SC, or behind a RACS
    server that passes 61xx/6Cxx through (draft-urien-core-racs leaves the
    fetch to the client unless it asks with ``MORE=``) all follow one rule.
    The chain is bounded: after ``max_rounds`` the last status word is final.
    A response shorter than a status word counts as 6F00.
    """

    def __init__(self, command: bytes, *, max_rounds: int = MAX_CHAINED_RESPONSES) -> None:
        self.command = command
        self.max_rounds = max_rounds
        self.rounds = 0
        self.sw: int | None = None
        self._body = bytearray()
        self._resent = False

    def __repr__(self) -> str:
        return f"ResponseChain(rounds={self.rounds}, sw={self.sw})"

    @property
    def data(self) -> bytes:
        return bytes(self._body)

    def receive(self, response: bytes) -> bytes | None:
        """Take one response; the next command to send, or None when done."""
        if self.sw is not None:
            raise ValueError("the answer is already complete")
        self.rounds += 1
        if len(response) < 2:
            self.sw = 0x6F00
            return None
        sw1, sw2 = response[-2], response[-1]
        if self.rounds < self.max_rounds:
            if sw1 == SW1_WRONG_LE and self._wrong_le_resend(response):
                return self.command[:4] + bytes([sw2])
            if sw1 == SW1_MORE_DATA:
                self._body += response[:-2]
                return GET_RESPONSE_HEADER + bytes([sw2])
        self._body += response[:-2]
        self.sw = sw1 << 8 | sw2
        return None

    def _wrong_le_resend(self, response: bytes) -> bool:
        """6Cxx answers a Le-only command (case 2, 5 bytes) once, with no data."""
        if self._resent or self.rounds != 1 or len(self.command) != 5 or len(response) != 2:
            return False
        if response[1] == 0:
            return False  # 6C00 names no length to resend with
        self._resent = True
        return True


def exchange(transmit: Callable[[bytes], bytes], command: bytes) -> tuple[bytes, int]:
    """Send ``command`` and follow its :class:`ResponseChain`; (all data, final status word)."""
    chain = ResponseChain(command)
    next_command: bytes | None = command
    while next_command is not None:
        next_command = chain.receive(transmit(next_command))
    assert chain.sw is not None
    return chain.data, chain.sw
