"""What a push needs from the way it reaches a card, whichever way that is.

Two deliveries share one push (``elock_push.session``):

- ``card_link.CardLink``: the key server dials a RACS server (TLS#1) that
  hosts the card, the seed's model;
- ``relay.RelayLink``: the card's host dialled the key server (a phone behind
  carrier NAT) and relays APDUs over its connection, as SGP.22's LPA does.

Either way TLS#2 runs inside the APDUs and ends in the card, so the push code
above this line cannot tell them apart, and neither carrier can read a PSK.
"""

from __future__ import annotations

from typing import Protocol


class CardChannel(Protocol):
    """APDUs to one card's eLock applet; every failure is an ``elock_push`` error."""

    apdus: int  # command APDUs sent
    round_trips: int  # requests to the carrier (one per script)

    async def power_on_and_select(self) -> None:
        """Power the card if the carrier can, and SELECT the eLock applet."""

    async def certificate(self) -> bytes:
        """The card's certificate (GET DATA 7F21), DER."""

    async def tls(self, records: bytes, *, reset: bool = False) -> tuple[bytes, int]:
        """Send one TLS#2 flight (after RESET TLS if *reset*); the answer and 9000/9001/9002."""

    async def shutdown(self) -> None:
        """End the carrier's session with the card; never raises."""
