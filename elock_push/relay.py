"""The card as its host relays it: APDU scripts over a connection the host opened.

A phone's SIM sits behind carrier NAT, so the key server cannot dial it; the
phone dials the key server instead (``key_client.sync``) and the server drives
the same push over that connection (``elock_common.card_sync``). The host
plays the RACS server's part: it runs each script against the card, follows
61xx chaining itself, and sends the responses back. TLS#2 ends in the card, so
what the host sees is what a RACS server sees.

``HostConnection`` is the little the key server's WebSocket must offer; a
closed or silent connection raises ``OSError`` or ``TimeoutError``, which
become ``TransportError`` here, as a cut RACS connection does.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from elock_common import card_protocol as c
from elock_common import card_sync as wire
from elock_push.card_link import (
    BLOCK,
    GET_CERTIFICATE,
    RESET_TLS,
    SW_OK,
    SW_TLS_END,
    SW_TLS_OPEN,
    tls_record_apdus,
)
from elock_push.errors import CardError, TransportError

SELECT = bytes([0x00, c.INS_SELECT, c.P1_SELECT_BY_NAME, 0x00, len(c.AID)]) + c.AID


class HostConnection(Protocol):
    async def send_text(self, frame: str) -> None: ...

    async def receive_text(self) -> str: ...


def _split(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise CardError("response without a status word", 0x6F00)
    return response[:-2], int.from_bytes(response[-2:], "big")


class RelayLink:
    """A ``CardChannel`` over a host's connection; counts what it sends."""

    def __init__(
        self, conn: HostConnection, *, block: int = BLOCK, timeout: float = 30.0
    ) -> None:
        self.conn, self.block, self.timeout = conn, block, timeout
        self.apdus = 0
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"RelayLink(apdus={self.apdus}, round_trips={self.round_trips})"

    async def send(self, message: wire.ServerMessage) -> None:
        try:
            await asyncio.wait_for(self.conn.send_text(wire.encode(message)), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"the card's host went away: {type(exc).__name__}") from exc

    async def _script(self, apdus: list[bytes]) -> list[bytes]:
        self.apdus += len(apdus)
        self.round_trips += 1
        await self.send(wire.Apdus(tuple(apdus)))
        try:
            frame = await asyncio.wait_for(self.conn.receive_text(), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"the card's host went away: {type(exc).__name__}") from exc
        try:
            message = wire.decode_host_message(frame)
        except wire.SyncFormatError as exc:
            raise TransportError(f"the card's host sent a malformed answer: {exc}") from exc
        if not isinstance(message, wire.Answers) or len(message.responses) != len(apdus):
            raise TransportError("the card's host did not answer the script")
        return list(message.responses)

    async def power_on_and_select(self) -> None:
        _, sw = _split((await self._script([SELECT]))[0])
        if sw != SW_OK:
            raise CardError("SELECT eLock", sw)

    async def certificate(self) -> bytes:
        data, sw = _split((await self._script([GET_CERTIFICATE]))[0])
        if sw != SW_OK:
            raise CardError("GET DATA (card certificate)", sw)
        return data

    async def tls(self, records: bytes, *, reset: bool = False) -> tuple[bytes, int]:
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
        """Nothing to power off: the host lets the card go when the connection ends."""
