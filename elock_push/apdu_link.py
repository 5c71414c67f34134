"""The eLock applet's APDUs for a push, over any carrier that runs APDU scripts.

TLS#2's records travel in TLS RECORDS APDUs (``00 D8``, ``docs/tls-endpoint.md``):
blocks of ``block`` bytes (240, as draft-urien-tls-se's host sends), P2 bit 0 on
the first and bit 1 on the last. Every block of one flight goes in ONE script
(one round trip to the carrier). The last block's status is the card's
session state: 9000 handshaking, 9001 open, 9002 ended.

``ApduLink`` is that logic once; a carrier subclass only says how a script
reaches the card (``_script``), how the card is powered (``_power_on``) and
how the carrier's session ends (``shutdown``): ``card_link.CardLink`` through
a RACS server, ``relay.RelayLink`` through the card's own host.

Time: a carrier may answer slowly or never (a RACS server that accepted TLS#1
and went silent, a phone that dawdles). Each link has one *deadline* for its
whole session (the loop's clock) and runs every exchange ``within`` it, so a
late carrier ends the visit with a ``TransportError`` (the caller records its
keys as for any broken visit) instead of holding the worker or being cancelled
in the middle of a card visit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from elock_common import card_protocol as c
from elock_push.errors import CardError, TransportError

SW_OK, SW_TLS_OPEN, SW_TLS_END = 0x9000, 0x9001, 0x9002
RESET_TLS = bytes.fromhex("00D8000000")
GET_CERTIFICATE = bytes.fromhex("00CA7F2100")
SELECT = bytes([0x00, c.INS_SELECT, c.P1_SELECT_BY_NAME, 0x00, len(c.AID)]) + c.AID
BLOCK = 240


def tls_record_apdus(records: bytes, block: int = BLOCK) -> list[bytes]:
    """The TLS RECORDS APDUs carrying *records* (none for no bytes)."""
    blocks = [records[i : i + block] for i in range(0, len(records), block)]
    apdus = []
    for i, chunk in enumerate(blocks):
        p2 = (0x01 if i == 0 else 0) | (0x02 if i == len(blocks) - 1 else 0)
        apdus.append(bytes([0x00, 0xD8, 0x00, p2, len(chunk)]) + chunk + b"\x00")
    return apdus


@contextlib.asynccontextmanager
async def within(deadline: float | None, late: str) -> AsyncIterator[None]:
    """Run the body before *deadline* (the loop's clock; None: no limit), else
    ``TransportError(late)``. A timeout of the body's own is left to the caller."""
    limit = asyncio.timeout_at(deadline)
    try:
        async with limit:
            yield
    except TimeoutError as exc:
        if not limit.expired():
            raise
        raise TransportError(late) from exc


def split_response(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise CardError("response without a status word", 0x6F00)
    return response[:-2], int.from_bytes(response[-2:], "big")


class ApduLink:
    """A ``CardChannel`` built on one primitive: run a script of APDUs, get every answer."""

    block = BLOCK
    apdus = 0  # command APDUs sent
    round_trips = 0  # scripts sent

    async def _script(self, apdus: list[bytes]) -> list[bytes]:
        """The card's answers, whole (61xx followed), one per APDU; ``PushError`` otherwise."""
        raise NotImplementedError

    async def _power_on(self) -> None:
        """Power the card on, where the carrier does that (RACS POWERON)."""

    async def shutdown(self) -> None:
        """End the carrier's session with the card; never raises."""

    async def power_on_and_select(self) -> None:
        await self._power_on()
        _, sw = split_response((await self._script([SELECT]))[0])
        if sw != SW_OK:
            raise CardError("SELECT eLock", sw)

    async def certificate(self) -> bytes:
        data, sw = split_response((await self._script([GET_CERTIFICATE]))[0])
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
            _, sw = split_response(response)
            if sw != SW_OK:
                raise CardError("TLS RECORDS", sw)
        answer, sw = split_response(responses[-1])
        if sw not in (SW_OK, SW_TLS_OPEN, SW_TLS_END):
            raise CardError("TLS RECORDS", sw)
        return answer, sw
