"""The card as the key server reaches it: one RACS session, one SEID, the eLock applet.

The applet's APDUs (SELECT, GET DATA, TLS RECORDS) are ``apdu_link.ApduLink``'s;
this module says how a script of them crosses RACS: every APDU of one flight
in ONE RACS request (``APDU ... APPEND`` lines, one round trip).

Long answers: a card answers at most 256 bytes and ``61xx`` ("xx more").
draft-urien-core-racs lets the client ask the server to fetch the rest with
``MORE=61 FETCH=00C00000``; a server need not do it unasked (the draft
author's does not, ours does), so every APDU carries those options. A server
that still passes ``61xx`` or ``6Cxx`` (wrong Le) back gets them followed here,
by ``elock_common.apdu.ResponseChain``, one more round trip each. Nothing
here reads the text of a ``+0YZ`` line beyond the hex of an APDU answer.

Time: a RACS server may accept TLS#1 and then answer slowly or never. Every
exchange of one push runs ``within`` the push's one *deadline*, so a silent or
trickling server ends the push with a ``TransportError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator

from elock_common.apdu import ResponseChain
from elock_push.apdu_link import (
    BLOCK,
    GET_CERTIFICATE,
    RESET_TLS,
    SW_OK,
    SW_TLS_END,
    SW_TLS_OPEN,
    ApduLink,
    tls_record_apdus,
    within,
)
from elock_push.errors import CardBusyError, RacsProtocolError, TransportError
from racs.client import (
    RacsClient,
    RemoteProtocolError,
    RemoteRacsError,
    SecureElementBusyError,
)

__all__ = [  # what the push code and the tests import from here
    "BLOCK", "GET_CERTIFICATE", "RESET_TLS", "SW_OK", "SW_TLS_END", "SW_TLS_OPEN", "CardLink",
    "racs_errors", "tls_record_apdus",
]  # fmt: skip
_TRANSPORT = (OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError)


SHOWN_MAX = 160  # characters of a RACS server's own text kept in a reason


def shown(text: str) -> str:
    """A RACS server's text as a reason may carry it: printable, at most ``SHOWN_MAX`` long.

    The reason becomes a key's ``last_error`` and a log line; the server chose
    the text (any ASCII byte, a line up to ``max_line``), so control bytes are
    escaped and the rest cut.
    """
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[: SHOWN_MAX + 1])
    return out if len(out) <= SHOWN_MAX else out[:SHOWN_MAX] + "..."


@contextlib.contextmanager
def racs_errors(seid: str, refused: str) -> Iterator[None]:
    """Every way a RACS exchange fails, as the ``PushError`` the key server acts on."""
    try:
        yield
    except SecureElementBusyError as exc:
        raise CardBusyError(seid, f"{exc.code} {exc.index:03d} {shown(exc.reason)}") from exc
    except RemoteRacsError as exc:
        raise TransportError(f"{refused}: {exc.code} {exc.index:03d} {shown(exc.reason)}") from exc
    except RemoteProtocolError as exc:
        raise RacsProtocolError(f"the RACS server answered outside the protocol: {exc}") from exc
    except _TRANSPORT as exc:
        raise TransportError(f"RACS connection lost: {type(exc).__name__}") from exc


class CardLink(ApduLink):
    """APDUs to one SEID over an open ``RacsClient``; counts what it sends."""

    def __init__(
        self,
        racs: RacsClient,
        seid: str,
        *,
        block: int = BLOCK,
        ask_server_to_fetch: bool = True,
        deadline: float | None = None,
        timeout: float = 30.0,
    ) -> None:
        """*deadline* (the loop's clock) bounds the session; *timeout* is how it is told."""
        self.racs, self.seid, self.block = racs, seid, block
        self.deadline = deadline
        self.late = f"the RACS server did not answer within {timeout:g} s"
        # False sends no MORE=/FETCH= (tests and benchmarks of the client's own chaining).
        self._chaining = {} if ask_server_to_fetch else {"more": None, "fetch": None}
        self.apdus = 0
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"CardLink({self.seid!r}, apdus={self.apdus}, round_trips={self.round_trips})"

    async def _send(self, apdus: list[bytes]) -> list[bytes]:
        self.round_trips += 1
        with racs_errors(self.seid, "RACS refused"):
            async with within(self.deadline, self.late):
                return await self.racs.script(self.seid, apdus, **self._chaining)

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

    async def _power_on(self) -> None:
        self.round_trips += 1
        with racs_errors(self.seid, f"RACS refused POWERON {self.seid}"):
            async with within(self.deadline, self.late):
                await self.racs.power_on(self.seid)

    async def shutdown(self) -> None:
        try:
            async with within(self.deadline, self.late):
                await self.racs.shutdown(self.seid)
        except (RemoteRacsError, RemoteProtocolError, TransportError, *_TRANSPORT):
            pass  # the RACS server powers the card off when the session ends anyway
