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
- ``CardError``: the card answered a status word the protocol does not allow.
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


class CardError(PushError):
    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what}: card answered {sw:04X}")
        self.sw = sw


class TlsSessionError(PushError):
    """TLS#2 ended with an error; the record that caused it was not acted on."""
