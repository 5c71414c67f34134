"""The TLS endpoint's APDU handler, after draft-urien-tls-se's ISO 7816 interface.

For the applet's dispatcher (``firmware.dispatch``): ``handle_tls`` is a
``Handler`` (``ApduCommand -> bytes``) that refuses with the applet's
``SwError`` family, and long answers go out through the dispatcher's own
61xx / GET RESPONSE chaining. ``docs/tls-endpoint.md`` is the full proposal:

    00 D8 00 00 [Le]        RESET TLS: start a new session (the draft's 00D8000000)
    00 D8 00 P2 Lc records  TLS bytes; P2 bit 0 = first block, bit 1 = last block
                            (03: a single block). Blocks are fed as they arrive;
                            non-last blocks answer 9000 and no data, the last
                            block answers with every TLS byte the card has to send.

``session_sw`` is the draft's end-of-answer status: 9000 handshake in
progress, 9001 session open, 9002 session ended (the answer then holds the
alert or close_notify to forward). The last block's answer ends with it (a
``Reply``; the dispatcher carries it to the last GET RESPONSE of a chained
answer). P1 other than 00 (the draft's clear-text export/import modes) is
refused: TLS#2's plaintext never leaves the card.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware.apdu import ApduCommand
from firmware.dispatch import Reply, Route, route
from firmware.errors import ConditionsNotSatisfiedError, IncorrectP1P2Error
from firmware.tls_endpoint import EndpointState, TlsEndpoint

CLA_TLS = 0x00  # as draft-urien-tls-se; the proprietary class 80 would do as well
INS_TLS = 0xD8
P2_FIRST = 0x01
P2_LAST = 0x02
SW_OK = 0x9000
SW_TLS_OPEN = 0x9001
SW_TLS_END = 0x9002
MAX_ANSWER = 3 * (1 << 14)  # TLS bytes held for one answer; our flights are ~1 KiB


class TlsApduHandler:
    """Framing state around one ``TlsEndpoint``: the answer being collected."""

    def __init__(self, endpoint: TlsEndpoint, clock: Callable[[], float]) -> None:
        self._endpoint = endpoint
        self._clock = clock  # certificate validity needs a time; see docs/tls-endpoint.md
        self._answer = bytearray()

    def __repr__(self) -> str:
        return f"TlsApduHandler({self._endpoint!r}, <{len(self._answer)} bytes pending>)"

    def reset(self) -> None:
        """Card reset, SELECT or deselect: drop the session and the partial answer."""
        self._answer.clear()
        self._endpoint.abort()

    def routes(self) -> list[Route]:
        return [
            route(CLA_TLS, INS_TLS, "TLS RECORDS", self.handle_apdu,
                  (SW_TLS_OPEN, SW_TLS_END, 0x6985, 0x6A86),
                  "docs/tls-endpoint.md, draft-urien-tls-se"),
        ]  # fmt: skip

    @property
    def session_sw(self) -> int:
        state = self._endpoint.state
        if state is EndpointState.OPEN:
            return SW_TLS_OPEN
        if state in (EndpointState.CLOSED, EndpointState.FAILED):
            return SW_TLS_END
        return SW_OK

    def handle_apdu(self, cmd: ApduCommand) -> bytes | Reply:
        """The route: ``handle_tls``, the last block ending with ``session_sw``."""
        answer = self.handle_tls(cmd)
        if cmd.p2 & P2_LAST:
            return Reply(answer, self.session_sw)
        return answer

    def handle_tls(self, cmd: ApduCommand) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 & ~(P2_FIRST | P2_LAST):
            raise IncorrectP1P2Error("TLS RECORDS takes P1 00 and P2 00..03")
        if cmd.p2 == 0 and not cmd.data:
            self._answer.clear()
            self._endpoint.open(self._clock())
            return b""
        if self._endpoint.state not in (EndpointState.HANDSHAKING, EndpointState.OPEN):
            raise ConditionsNotSatisfiedError(f"no TLS session ({self._endpoint.state.name})")
        if cmd.p2 & P2_FIRST:
            self._answer.clear()
        self._answer += self._endpoint.feed(cmd.data)
        if len(self._answer) > MAX_ANSWER:  # cannot happen with this server's flights
            self.reset()
            raise ConditionsNotSatisfiedError("TLS answer too large")
        if not cmd.p2 & P2_LAST:
            return b""
        answer, self._answer = bytes(self._answer), bytearray()
        return answer
