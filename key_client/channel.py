"""The key host's view of the applet's Open: datagrams in, datagrams out.

The applet runs the DTLS and CoAP client; the host only carries datagrams and
keeps time (the card has no clock). This Protocol is that contract, whatever
carries the APDUs underneath (PC/SC, an in-process card, a remote card).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from elock_common import card_protocol as c


@dataclass(frozen=True)
class KeyInfo:
    """What the card tells about one of its keys; never a PSK."""

    container_id: int
    label: str
    uri: str
    not_before: int = 0
    not_after: int = 0xFFFFFFFF
    pin_required: bool = False


@dataclass(frozen=True)
class OpenStep:
    """One answer of the applet during Open."""

    datagrams: list[bytes] = field(default_factory=list)
    timer: float | None = None  # absolute host time (seconds) at which to call timeout()
    code: str | None = None  # the CoAP response code once the Open is over, e.g. "2.04"
    payload: bytes = b""
    failure: str | None = None  # the applet gave up (handshake failed, alert, retries used up)
    alert: int | None = None  # the TLS alert description, when the lock's alert ended it
    failure_kind: int | None = None  # c.FAILURE_*: why, as a type rather than text
    progress: int = c.PROGRESS_NO_ANSWER  # c.PROGRESS_*: how far the Open got

    @property
    def finished(self) -> bool:
        return self.code is not None or self.failure is not None

    @property
    def request_sent(self) -> bool:
        """Whether the door may have opened: the handshake finished, the request went out."""
        return self.progress >= c.PROGRESS_REQUEST_SENT


class OpenChannel(Protocol):
    """An applet, reached somehow, that can run one Open at a time."""

    def keys(self) -> list[KeyInfo]: ...

    def verify_pin(self, pin: str) -> None: ...

    def begin(
        self, container_id: int, now: float, *, retransmit: float | None = None
    ) -> OpenStep: ...

    def feed(self, datagrams: list[bytes], now: float) -> OpenStep: ...

    def timeout(self, now: float) -> OpenStep: ...

    def abort(self) -> None: ...

    def close(self) -> None:
        """Let the card go (a PC/SC connection, a card file's lock); safe to call twice."""
