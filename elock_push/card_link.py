"""The card as the key server reaches it: one RACS session, one SEID, the eLock applet.

TLS#2's records travel in TLS RECORDS APDUs (``00 D8``, ``docs/tls-endpoint.md``):
blocks of ``block`` bytes (240, as draft-urien-tls-se's host sends), P2 bit 0 on
the first and bit 1 on the last. Every block of one flight goes in ONE RACS
request (``APDU ... APPEND`` lines, one round trip). The last block's status
is the card's session state: 9000 handshaking, 9001 open, 9002 ended.

Long answers: a card answers at most 256 bytes and ``61xx`` ("xx more").
draft-urien-core-racs lets the client ask the server to fetch the rest with
``MORE=61 FETCH=00C00000``; a server need not do it unasked (the draft
author's does not, ours does), so every APDU carries those options. A server
that still passes ``61xx`` or ``6Cxx`` (wrong Le) back gets them followed here,
by ``elock_common.apdu.ResponseChain``, one more round trip each. Nothing
here reads the text of a ``+0YZ`` line beyond the hex of an APDU answer.
"""

from __future__ import annotations

import asyncio
import ssl

from elock_common import card_protocol as c
from elock_common.apdu import ResponseChain
from elock_push.errors import CardError, TransportError
from racs.client import LocalProtocolError, RacsClient, RemoteRacsError

SW_OK, SW_TLS_OPEN, SW_TLS_END = 0x9000, 0x9001, 0x9002
RESET_TLS = bytes.fromhex("00D8000000")
GET_CERTIFICATE = bytes.fromhex("00CA7F2100")
BLOCK = 240
_TRANSPORT = (
    OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError,
    LocalProtocolError,
)  # fmt: skip


def tls_record_apdus(records: bytes, block: int = BLOCK) -> list[bytes]:
    """The TLS RECORDS APDUs carrying *records* (none for no bytes)."""
    blocks = [records[i : i + block] for i in range(0, len(records), block)]
    apdus = []
    for i, chunk in enumerate(blocks):
        p2 = (0x01 if i == 0 else 0) | (0x02 if i == len(blocks) - 1 else 0)
        apdus.append(bytes([0x00, 0xD8, 0x00, p2, len(chunk)]) + chunk + b"\x00")
    return apdus


def _split(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise CardError("response without a status word", 0x6F00)
    return response[:-2], int.from_bytes(response[-2:], "big")


class CardLink:
    """APDUs to one SEID over an open ``RacsClient``; counts what it sends."""

    def __init__(
        self, racs: RacsClient, seid: str, *, block: int = BLOCK, ask_server_to_fetch: bool = True
    ) -> None:
        self.racs, self.seid, self.block = racs, seid, block
        # False sends no MORE=/FETCH= (tests and benchmarks of the client's own chaining).
        self._chaining = {} if ask_server_to_fetch else {"more": None, "fetch": None}
        self.apdus = 0
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"CardLink({self.seid!r}, apdus={self.apdus}, round_trips={self.round_trips})"

    async def _send(self, apdus: list[bytes]) -> list[bytes]:
        self.round_trips += 1
        try:
            return await self.racs.script(self.seid, apdus, **self._chaining)
        except RemoteRacsError as exc:
            raise TransportError(f"RACS refused: {exc}") from exc
        except _TRANSPORT as exc:
            raise TransportError(f"RACS connection lost: {type(exc).__name__}") from exc

    async def _script(self, apdus: list[bytes]) -> list[bytes]:
        """The answers to *apdus* (one round trip), the last one followed to its end.

        Only the last answer can be chained: GET RESPONSE must come right after
        the command it continues, and the others were sent already.
        """
        self.apdus += len(apdus)
        responses = await self._send(apdus)
        if len(responses) != len(apdus):
            raise TransportError(f"RACS answered {len(responses)} of {len(apdus)} APDUs")
        chain = ResponseChain(apdus[-1])
        follow = chain.receive(responses[-1])
        if follow is None:
            return responses
        while follow is not None:
            self.apdus += 1
            answers = await self._send([follow])
            follow = chain.receive(answers[0] if len(answers) == 1 else b"")  # else: 6F00
        assert chain.sw is not None
        return [*responses[:-1], chain.data + chain.sw.to_bytes(2, "big")]

    async def power_on_and_select(self) -> None:
        try:
            self.round_trips += 1
            await self.racs.power_on(self.seid)
        except RemoteRacsError as exc:
            raise TransportError(f"RACS refused POWERON {self.seid}: {exc}") from exc
        except _TRANSPORT as exc:
            raise TransportError(f"RACS connection lost: {type(exc).__name__}") from exc
        select = bytes([0x00, c.INS_SELECT, c.P1_SELECT_BY_NAME, 0x00, len(c.AID)]) + c.AID
        _, sw = _split((await self._script([select]))[0])
        if sw != SW_OK:
            raise CardError("SELECT eLock", sw)

    async def certificate(self) -> bytes:
        data, sw = _split((await self._script([GET_CERTIFICATE]))[0])
        if sw != SW_OK:
            raise CardError("GET DATA (card certificate)", sw)
        return data

    async def tls(self, records: bytes, *, reset: bool = False) -> tuple[bytes, int]:
        """Send a flight (after RESET TLS if *reset*); the card's answer and session status."""
        apdus = [RESET_TLS] if reset else []
        apdus += tls_record_apdus(records, self.block)
        if not apdus:
            return b"", SW_OK
        responses = await self._script(apdus)
        for response in responses[:-1]:
            _, sw = _split(response)
            if sw != SW_OK:
                raise CardError("TLS RECORDS", sw)
        answer, sw = _split(responses[-1])
        if sw not in (SW_OK, SW_TLS_OPEN, SW_TLS_END):
            raise CardError("TLS RECORDS", sw)
        return answer, sw

    async def shutdown(self) -> None:
        try:
            await self.racs.shutdown(self.seid)
        except (RemoteRacsError, *_TRANSPORT):
            pass  # the RACS server powers the card off when the session ends anyway
