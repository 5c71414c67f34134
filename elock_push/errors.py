"""What can go wrong in a push, as types the key server can act on.

- ``UntrustedCardError``: the card's certificate is not the one of the SEID we
  asked for (``cause`` is the ``elock_common.pki`` error: self-signed, wrong
  SEID, wrong issuer, expired ...). Nothing was sent into the card.
- ``TransportError``: RACS failed or the connection was cut. Whatever was in
  flight is unknown: complete or absent, never half (the card's journal and
  TLS#2 see to that); retry, the commands are idempotent. Two kinds say more:
  ``CardBusyError`` (RACS says another session holds the card: try again soon,
  nothing failed) and ``RacsProtocolError`` (the RACS server answered
  something that is not RACS).
- ``CardError``: the card answered a status word the protocol does not allow,
  before any command was sent (SELECT, GET DATA, the handshake): nothing changed.
  The same after the commands went in is ``UnconfirmedCommandsError``, a
  ``TransportError``: whoever carries the APDUs (a RACS server, a phone) can
  rewrite a status word, and the card may well have done the commands.
- ``TlsSessionError``: TLS#2 failed (handshake refused, an alert, a tampered
  record); the card dropped the command it could not authenticate.
"""

from __future__ import annotations

from elock_common.pki import SeCertificateError


class PushError(Exception):
    """Base class; ``reason`` is a short text for logs and problem+json."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UntrustedCardError(PushError):
    def __init__(self, seid: str, cause: SeCertificateError) -> None:
        super().__init__(f"card {seid}: certificate refused: {cause}")
        self.seid = seid
        self.cause = cause


class TransportError(PushError):
    """RACS refused or the connection broke; the last command's outcome is unknown."""


class CardBusyError(TransportError):
    """RACS refused because another session holds the card (its IN_USE class, ``-7YZ``)."""

    def __init__(self, seid: str, reason: str) -> None:
        super().__init__(f"card {seid} is in use by another RACS session: {reason}")
        self.seid = seid


class RacsProtocolError(TransportError):
    """The RACS server's answer is not RACS (a malformed line, bad hex): a broken server."""


class UnconfirmedCommandsError(TransportError):
    """The commands went into TLS#2 and no authenticated answer came back: retry them.

    Their outcome is unknown (a carrier that rewrote the status word, a card
    that failed after acting), so it is never a final failure: an install
    counted as failed would count as never written, and a revoke would then
    forget a container that is in the card.
    """

    def __init__(self, cause: PushError) -> None:
        super().__init__(f"{cause.reason}, after the commands went to the card: outcome unknown")
        self.cause = cause


class CardError(PushError):
    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what}: card answered {sw:04X}")
        self.sw = sw


class TlsSessionError(PushError):
    """TLS#2 ended with an error; the record that caused it was not acted on."""
