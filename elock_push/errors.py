"""What can go wrong in a push, as types the key server can act on.

- ``UntrustedCardError``: the card's certificate is not the one of the SEID we
  asked for (``cause`` is the ``elock_common.pki`` error: self-signed, wrong
  SEID, wrong issuer, expired ...). Nothing was sent into the card.
- ``TransportError``: RACS failed or the connection was cut. Whatever was in
  flight is unknown: complete or absent, never half (the card's journal and
  TLS#2 see to that); retry, the commands are idempotent.
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


class CardError(PushError):
    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what}: card answered {sw:04X}")
        self.sw = sw


class TlsSessionError(PushError):
    """TLS#2 ended with an error; the record that caused it was not acted on."""
