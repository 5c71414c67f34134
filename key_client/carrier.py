"""Carry the applet's datagrams to the lock and back, keeping the DTLS timers.

The card decides what to send and when to retransmit; the host only moves
datagrams, tells the card the time, and calls ``timeout`` when the card's
timer runs out with nothing received. Datagrams that arrive together (one
flight of the lock) are handed to the card in one exchange, which is what
keeps an Open at five APDU exchanges.

The host tells the card what it knows of the link: the first retransmission
timeout (``retransmit``, 250 ms by default: a lock at a door is a LAN or a
mobile hop away, not a satellite). The card then times the round trips itself.

The answer is one of four, and each is a type: ``OpenOutcome`` (opened),
``RefusedError`` (the lock said no, and why), ``UnreachableError`` (the request
never went out: the door is shut) and ``OutcomeUnknownError`` (the request went
out and no answer came back: the door may be open). Which of the last two it
is comes from the card's progress in every Open step, not from reason text.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from elock_common import card_protocol as c
from key_client.channel import KeyInfo, OpenChannel, OpenStep
from key_client.errors import CardError, OutcomeUnknownError, RefusedError, UnreachableError

COALESCE_SECONDS = 0.001  # longest wait for the rest of a flight
MAX_DATAGRAM = c.MAX_DATAGRAM
MAX_QUEUED = 64  # datagrams held for the card; a flood beyond it is dropped
DEFAULT_TIMEOUT = 20.0
DEFAULT_RETRANSMIT = 0.25  # seconds: the card's first DTLS retransmission timeout

Progress = Callable[[str], None]


@dataclass(frozen=True)
class OpenOutcome:
    label: str
    uri: str
    code: str
    message: str
    elapsed: float
    exchanges: int
    sent: int
    received: int


def lock_address(uri: str) -> tuple[str, int]:
    """Host and port of a ``coaps://`` lock URI (IPv6 literals in brackets)."""
    parts = urlsplit(uri)
    if parts.scheme != "coaps" or not parts.hostname:
        raise UnreachableError(f"not a coaps:// lock URI: {uri!r}")
    return parts.hostname, parts.port or 5684


class _Inbox(asyncio.DatagramProtocol):
    """Datagrams from the lock's address, in arrival order, at most ``MAX_QUEUED``."""

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.arrived = asyncio.Event()
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) <= MAX_DATAGRAM and len(self.queue) < MAX_QUEUED:
            self.queue.append(data)
            self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc  # e.g. ICMP port unreachable: the lock is not listening

    def take(self) -> list[bytes]:
        """What one DATAGRAMS exchange carries, from the oldest; the rest waits its turn."""
        count = c.datagrams_in_one_exchange(list(itertools.islice(self.queue, c.MAX_DATAGRAMS_IN)))
        batch = [self.queue.popleft() for _ in range(count)]
        if not self.queue:
            self.arrived.clear()
        return batch

    @property
    def room(self) -> bool:
        """Whether one more datagram could join what is queued in the same exchange."""
        queued = list(itertools.islice(self.queue, c.MAX_DATAGRAMS_IN))
        return c.datagrams_in_one_exchange(queued) == len(queued) < c.MAX_DATAGRAMS_IN


async def open_door(
    channel: OpenChannel,
    key: KeyInfo,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retransmit: float = DEFAULT_RETRANSMIT,
    progress: Progress | None = None,
) -> OpenOutcome:
    """Run one Open; return when the lock opened, raise a ``KeyHostError`` otherwise."""
    say = progress or (lambda stage: None)
    loop = asyncio.get_running_loop()
    host, port = lock_address(key.uri)
    started = time.monotonic()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), timeout=min(timeout, 5)
        )
    except (OSError, TimeoutError) as exc:
        raise UnreachableError(f"cannot resolve {host}: {exc}") from None
    family, _, _, _, address = infos[0]
    transport, inbox = await loop.create_datagram_endpoint(
        _Inbox, family=family, remote_addr=(str(address[0]), int(address[1]))
    )
    sent = received = 0
    exchanges = 1
    deadline = loop.time() + timeout
    try:
        say("handshake")
        step = await _on_card(
            partial(channel.begin, key.container_id, loop.time(), retransmit=retransmit)
        )
        while True:
            for datagram in step.datagrams:
                transport.sendto(datagram)
                sent += 1
            if step.finished:
                break
            wait_until = min(step.timer or deadline, deadline)
            batch = await _receive(inbox, wait_until - loop.time())
            received += len(batch)
            if not batch and loop.time() >= deadline:
                if step.request_sent:
                    raise OutcomeUnknownError(_lost(key.uri, timeout))
                raise UnreachableError(_silence(key.uri, timeout, inbox.error))
            if not batch:
                say("retransmitting")
            step = await _next_step(channel, step, batch, loop.time(), key.uri)
            exchanges += 1
            if step.code is None and step.failure is None and exchanges == 4:
                say("waiting for the lock")
    except BaseException:
        channel.abort()
        raise
    finally:
        transport.close()
    return _outcome(key, step, time.monotonic() - started, exchanges, sent, received)


async def _on_card(call: Callable[[], OpenStep]) -> OpenStep:
    """One card call in a thread: an APDU exchange blocks (PC/SC; tens of ms on a real
    SIM) and the loop must keep reading the lock's datagrams meanwhile. Cancelled, it
    still waits for the exchange to end, so ``abort`` never talks to the card beside it."""
    exchange = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(exchange)
    except asyncio.CancelledError:
        await asyncio.wait([exchange])
        raise


async def _receive(inbox: _Inbox, wait: float) -> list[bytes]:
    if not inbox.queue:
        try:
            await asyncio.wait_for(inbox.arrived.wait(), timeout=max(wait, 0))
        except TimeoutError:
            return []
    # The rest of the flight was sent back to back: let the event loop read
    # what has already arrived, and wait a little longer only if nothing has.
    # What did not fit in the last exchange goes first, without waiting.
    for delay in (0, 0, COALESCE_SECONDS):
        if not inbox.room:
            break
        await asyncio.sleep(delay)
        if len(inbox.queue) > 1:
            break
    return inbox.take()


async def _next_step(
    channel: OpenChannel, step: OpenStep, batch: list[bytes], now: float, uri: str
) -> OpenStep:
    """The card's next step: what arrived, or its timer. A card lost once the request went
    out (pulled, its reader gone) leaves the door's state unknown, not just a card problem."""
    try:
        if batch:
            return await _on_card(partial(channel.feed, batch, now))
        return await _on_card(partial(channel.timeout, now))
    except CardError as exc:
        if not step.request_sent:
            raise
        raise OutcomeUnknownError(
            f"the request reached {uri} but the card was lost before the answer ({exc}): "
            f"{OutcomeUnknownError.advice}"
        ) from None


def _silence(uri: str, timeout: float, error: OSError | None) -> str:
    why = f" ({error.strerror})" if error and error.strerror else ""
    return f"no answer from the lock at {uri} within {timeout:g} s{why}"


def _lost(uri: str, timeout: float) -> str:
    return (
        f"the request reached {uri} but no answer came within {timeout:g} s: "
        f"{OutcomeUnknownError.advice}"
    )


def _outcome(
    key: KeyInfo, step: OpenStep, elapsed: float, exchanges: int, sent: int, received: int
) -> OpenOutcome:
    if step.failure is not None:
        if step.request_sent:
            raise OutcomeUnknownError(
                f"the request reached {key.uri} but no answer came ({step.failure}): "
                f"{OutcomeUnknownError.advice}"
            )
        if step.failure_kind == c.FAILURE_PEER_ALERT:
            # The lock ended the handshake: it does not accept this key at all.
            raise RefusedError("handshake", step.failure, alert=step.alert)
        raise UnreachableError(f"the secure element gave up: {step.failure}")
    assert step.code is not None
    message = step.payload.decode("utf-8", "replace")
    if not step.code.startswith("2."):
        raise RefusedError(step.code, message or "no reason given")
    return OpenOutcome(key.label, key.uri, step.code, message, elapsed, exchanges, sent, received)
