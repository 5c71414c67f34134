"""How a RACS server answers where draft-urien-core-racs leaves it free: its *style*.

Two styles, chosen with ``[server] style`` in racs.toml (docs/racs.md,
"Interoperability"):

* ``elock`` (the default): the seed's APDU algorithm runs on every APDU. The
  server re-sends a Le-only command that got ``6Cxx`` and fetches ``61xx``
  with GET RESPONSE unasked, so a client gets one complete answer per APDU.
* ``openracs``: as the draft author's reference server (OpenRACS,
  purien/racs_0_1) does. ``61xx`` is fetched only when the request says
  ``MORE=`` (``FETCH=`` alone changes nothing), ``6Cxx`` is re-sent only when
  it says ``CONTINUE=``; otherwise the card's answer comes back as it is. Its
  success lines name the SE as that server does: ``SEID 0 has been powered on``.

A client that works against both, as ours does (``MORE=61 FETCH=00C00000`` on
every APDU, and following what still comes back), works against any server
that keeps to the draft. The suite runs the push tests in both styles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from racs.commands import ApduOptions

GET_RESPONSE = b"\x00\xc0\x00\x00"
SW1_MORE = 0x61


@dataclass(frozen=True)
class Chaining:
    """What the server does with one APDU's 61xx/6Cxx, options and style resolved."""

    more: int | None  # SW1 that makes the server send ``fetch`` + SW2; None: pass it back
    fetch: bytes
    resend_wrong_le: bool
    expect_sw: int | None


class ServerStyle(enum.Enum):
    ELOCK = "elock"
    OPENRACS = "openracs"

    def chaining(self, options: ApduOptions) -> Chaining:
        fetch = options.fetch if options.fetch is not None else GET_RESPONSE
        if self is ServerStyle.ELOCK:
            more = options.more if options.more is not None else SW1_MORE
            return Chaining(more, fetch, True, options.expect_sw)
        return Chaining(options.more, fetch, options.expect_sw is not None, options.expect_sw)

    def powered_on(self, seid: str, already: bool) -> str:
        if self is ServerStyle.OPENRACS:
            if already:
                return f"warning SEID {seid} was already powered, POWERON has been ignored"
            return f"SEID {seid} has been powered on"
        return (
            f"{seid} was already powered on, POWERON ignored"
            if already
            else (f"{seid} is powered on")
        )

    def powered_off(self, seid: str) -> str:
        if self is ServerStyle.OPENRACS:
            return f"SEID {seid} has been powered off"
        return f"{seid} is powered off"

    def reset(self, seid: str, warm: bool) -> str:
        if self is ServerStyle.OPENRACS:
            return f"SEID {seid} has been resetted" + (" (warm)" if warm else "")
        return f"{seid} reseted"  # the seed's wording
