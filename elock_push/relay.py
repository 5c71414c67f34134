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
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from elock_common import card_sync as wire
from elock_push.apdu_link import BLOCK, ApduLink, within
from elock_push.errors import TransportError

TOO_LONG = "the sync took too long"
T = TypeVar("T")


class HostConnection(Protocol):
    async def send_text(self, frame: str) -> None: ...

    async def receive_text(self) -> str: ...


class RelayLink(ApduLink):
    """A ``CardChannel`` over a host's connection; counts what it sends."""

    def __init__(
        self,
        conn: HostConnection,
        *,
        block: int = BLOCK,
        timeout: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        """*timeout* bounds each exchange; *deadline* (the loop's clock) the whole sync."""
        self.conn, self.block, self.timeout, self.deadline = conn, block, timeout, deadline
        self.apdus = 0
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"RelayLink(apdus={self.apdus}, round_trips={self.round_trips})"

    async def _exchange(self, step: Awaitable[T]) -> T:
        """One send or receive: within ``timeout``, and within the sync's deadline."""
        try:
            async with within(self.deadline, TOO_LONG):
                return await asyncio.wait_for(step, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"the card's host went away: {type(exc).__name__}") from exc

    async def send(self, message: wire.ServerMessage) -> None:
        await self._exchange(self.conn.send_text(wire.encode(message)))

    async def _script(self, apdus: list[bytes]) -> list[bytes]:
        self.apdus += len(apdus)
        self.round_trips += 1
        await self.send(wire.Apdus(tuple(apdus)))
        frame = await self._exchange(self.conn.receive_text())
        try:
            message = wire.decode_host_message(frame)
        except wire.SyncFormatError as exc:
            raise TransportError(f"the card's host sent a malformed answer: {exc}") from exc
        if not isinstance(message, wire.Answers) or len(message.responses) != len(apdus):
            raise TransportError("the card's host did not answer the script")
        return list(message.responses)

    async def shutdown(self) -> None:
        """Nothing to power off: the host lets the card go when the connection ends."""
