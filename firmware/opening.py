"""OPEN, DATAGRAMS, TIMER, CLOSE: the card runs the DTLS and CoAP clients, the host carries.

The host never sees the PSK or a session key: it gets datagrams to send, a
delay after which to call TIMER if nothing arrived, and at the end the CoAP
response code and payload. The sans-I/O ``OpenSession`` (firmware.coap_open)
does the protocol work; this module is the thin APDU adapter around it.

Time comes from the host in every command (TAG_NOW, Unix milliseconds): the
card has no clock. So the validity check at OPEN is advisory, a way to fail
fast with a clear status word; a host that lies about the time gains nothing,
because the lock checks the key's validity against its own clock.

The host may also say what it knows of the link (TAG_RETRANSMIT_MS: the first
retransmission timeout); the card clamps it and then learns the round trip
from the times the host gives. Every step says how far the Open got
(TAG_PROGRESS) and a failed one why (TAG_FAILURE), so the host can tell a lock
that never answered from a request whose answer was lost, without reading
the reason text. The card's work per Open is bounded: at most
``MAX_EXCHANGES`` steps, 12 handshake resends, 4 request resends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.container import KeyContainer
from firmware.apdu import ApduCommand
from firmware.coap_open import OpenFailed, OpenResult, OpenSession
from firmware.dispatch import Route, route
from firmware.dtls.flight import INITIAL_TIMEOUT
from firmware.errors import (
    ConditionsNotSatisfiedError,
    IncorrectP1P2Error,
    WrongDataError,
    WrongLengthError,
)
from firmware.keyring import Keyring
from firmware.pin import CardPin

log = logging.getLogger(__name__)

MAX_EXCHANGES = 32  # a stuck Open ends instead of holding the card forever
MAX_DATAGRAMS_IN = c.MAX_DATAGRAMS_IN
MAX_DATAGRAM = c.MAX_DATAGRAM
MAX_PAYLOAD = 1024
MAX_REASON = 64


class OpenSessionLike(Protocol):
    @property
    def progress(self) -> int: ...
    def connect(self, now: float) -> None: ...
    def receive_datagram(self, data: bytes, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[bytes]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> object | None: ...


Rng = Callable[[int], bytes]
SessionFactory = Callable[[KeyContainer, Rng, float], OpenSessionLike]


def default_session_factory(
    container: KeyContainer, rng: Rng, initial_timeout: float = INITIAL_TIMEOUT
) -> OpenSessionLike:
    """The real thing: POST with an empty payload to the container's URI."""
    return OpenSession(
        container.identity,
        container.psk,
        container.uri,
        "POST",
        b"",
        rng=rng,
        initial_timeout=initial_timeout,
    )


def coap_code_byte(code: str) -> int:
    """'2.04' -> 0x44 (RFC 7252 3: class in the top 3 bits, detail in the low 5)."""
    cls, _, detail = code.partition(".")
    value = int(cls) << 5 | int(detail)
    if not (0 <= int(cls) <= 7 and 0 <= int(detail) <= 31):
        raise ValueError(f"not a CoAP code: {code!r}")
    return value


class Opener:
    """At most one Open at a time; OPEN again abandons the previous one."""

    def __init__(self, keyring: Keyring, pin: CardPin, factory: SessionFactory, rng: Rng) -> None:
        self.keyring, self.pin, self.factory, self.rng = keyring, pin, factory, rng
        self.session: OpenSessionLike | None = None
        self.exchanges = 0

    def __repr__(self) -> str:
        return f"Opener(running={self.session is not None}, exchanges={self.exchanges})"

    def reset(self) -> None:
        if self.session is not None:
            log.debug("open session abandoned")
        self.session, self.exchanges = None, 0

    def handle_open(self, cmd: ApduCommand) -> bytes:
        _no_p1p2(cmd)
        r = tlv.TlvReader(cmd.data, (c.TAG_CONTAINER, c.TAG_NOW, c.TAG_RETRANSMIT_MS))
        now = _now(r)
        initial_timeout = r.uint(c.TAG_RETRANSMIT_MS, 2, int(INITIAL_TIMEOUT * 1000)) / 1000
        container = self.keyring.get(r.uint(c.TAG_CONTAINER, 1))
        if not container.valid_at(int(now)):
            raise ConditionsNotSatisfiedError("container not valid at the host's time")
        if container.pin_required:
            self.pin.consume()
        self.reset()
        log.debug("open started for container %d", container.container_id)
        try:
            self.session = self.factory(container, self.rng, initial_timeout)
            self.session.connect(now)
            return self._step(now)
        except Exception as exc:
            return self._abort(exc)

    def handle_datagrams(self, cmd: ApduCommand) -> bytes:
        _no_p1p2(cmd)
        r = tlv.TlvReader(cmd.data, (c.TAG_NOW,), repeatable=(c.TAG_DATAGRAM_IN,))
        now = _now(r)
        datagrams = r.repeated(c.TAG_DATAGRAM_IN)
        if len(datagrams) > MAX_DATAGRAMS_IN or any(len(d) > MAX_DATAGRAM for d in datagrams):
            raise WrongLengthError("too many or too large datagrams")
        session = self._running()
        try:
            for datagram in datagrams:
                session.receive_datagram(datagram, now)
            return self._step(now, fire_timer=True)
        except Exception as exc:
            return self._abort(exc)

    def handle_timer(self, cmd: ApduCommand) -> bytes:
        _no_p1p2(cmd)
        now = _now(tlv.TlvReader(cmd.data, (c.TAG_NOW,)))
        self._running()
        try:
            return self._step(now, fire_timer=True)
        except Exception as exc:
            return self._abort(exc)

    def handle_close(self, cmd: ApduCommand) -> bytes:
        _no_p1p2(cmd)
        if cmd.data:
            raise WrongLengthError("CLOSE takes no data")
        self.reset()
        return b""

    def _abort(self, exc: Exception) -> bytes:
        """The session itself failed (a bug, not the peer): end this Open, say so."""
        log.error("open session raised %s; Open abandoned", type(exc).__name__)
        progress = self.session.progress if self.session is not None else 0
        self.reset()
        return tlv.encode_all(
            [
                (c.TAG_STATE, bytes([c.STATE_FAILED])),
                (c.TAG_PROGRESS, bytes([progress])),
                (c.TAG_REASON, b"internal"),
                (c.TAG_FAILURE, bytes([c.FAILURE_CARD])),
            ]
        )

    def _running(self) -> OpenSessionLike:
        if self.session is None:
            raise ConditionsNotSatisfiedError("no Open in progress")
        return self.session

    def _step(self, now: float, *, fire_timer: bool = False) -> bytes:
        session = self._running()
        self.exchanges += 1
        timer = session.get_timer()
        if fire_timer and timer is not None and now >= timer:
            session.handle_timer(now)
        items = [(c.TAG_DATAGRAM_OUT, d) for d in session.datagrams_to_send(now)]
        state, extra = c.STATE_RUNNING, self._drain_events()
        if extra:
            state = c.STATE_DONE if extra[0][0] == c.TAG_COAP_CODE else c.STATE_FAILED
        elif self.exchanges >= MAX_EXCHANGES:
            state = c.STATE_FAILED
            extra = [
                (c.TAG_REASON, b"too many exchanges"),
                (c.TAG_FAILURE, bytes([c.FAILURE_CARD])),
            ]
        else:
            timer = session.get_timer()
            if timer is not None:
                delay = max(0, math.ceil((timer - now) * 1000))
                items.append((c.TAG_TIMER, min(delay, 0xFFFFFFFF).to_bytes(4, "big")))
        progress = (c.TAG_PROGRESS, bytes([session.progress]))
        if state != c.STATE_RUNNING:
            log.debug("open ended in state %d after %d exchanges", state, self.exchanges)
            self.reset()
        return tlv.encode_all([(c.TAG_STATE, bytes([state])), progress, *items, *extra])

    def _drain_events(self) -> list[tuple[int, bytes]]:
        """The end of the Open, if an event says so: result or failure items."""
        assert self.session is not None
        while (event := self.session.next_event()) is not None:
            if isinstance(event, OpenResult):
                return [
                    (c.TAG_COAP_CODE, bytes([coap_code_byte(event.code)])),
                    (c.TAG_COAP_PAYLOAD, event.payload[:MAX_PAYLOAD]),
                ]
            if isinstance(event, OpenFailed):
                items = [(c.TAG_REASON, event.reason.encode("ascii", "replace")[:MAX_REASON])]
                if event.alert is not None:
                    items.append((c.TAG_ALERT, bytes([event.alert & 0xFF])))
                items.append((c.TAG_FAILURE, bytes([int(event.kind)])))
                return items
        return []

    def routes(self) -> list[Route]:
        doc = "docs/apdu.md#open"
        return [
            route(c.CLA_PROPRIETARY, c.INS_OPEN, "OPEN", self.handle_open,
                  (0x6982, 0x6985, 0x6A80, 0x6A82, 0x6A86), doc),
            route(c.CLA_PROPRIETARY, c.INS_DATAGRAMS, "DATAGRAMS", self.handle_datagrams,
                  (0x6985, 0x6A80, 0x6A86), doc),
            route(c.CLA_PROPRIETARY, c.INS_TIMER, "TIMER", self.handle_timer,
                  (0x6985, 0x6A80, 0x6A86), doc),
            route(c.CLA_PROPRIETARY, c.INS_CLOSE, "CLOSE", self.handle_close, (0x6A86,), doc),
        ]  # fmt: skip


def _no_p1p2(cmd: ApduCommand) -> None:
    if cmd.p1p2:
        raise IncorrectP1P2Error("P1 P2 must be 00 00")


def _now(r: tlv.TlvReader) -> float:
    """The host's clock, Unix milliseconds in 8 bytes, as float seconds for the session."""
    ms = r.uint(c.TAG_NOW, 8)
    if ms >= 1 << 53:
        raise WrongDataError("time out of range")
    return ms / 1000.0
