"""Carry the applet's datagrams to the lock and back, keeping the DTLS timers.

The card decides what to send and when to retransmit; the host only moves
datagrams, tells the card the time, and calls ``timeout`` when the card's
timer runs out with nothing received. Datagrams that arrive together (one
flight of the lock) are handed to the card in one exchange, which is what
keeps an Open at five APDU exchanges.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from key_client.channel import KeyInfo, OpenChannel, OpenStep
from key_client.errors import RefusedError, UnreachableError

COALESCE_SECONDS = 0.001  # longest wait for the rest of a flight
MAX_DATAGRAM = 2048
DEFAULT_TIMEOUT = 20.0

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
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) <= MAX_DATAGRAM and not self.queue.full():
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc  # e.g. ICMP port unreachable: the lock is not listening


async def open_door(
    channel: OpenChannel,
    key: KeyInfo,
    *,
    timeout: float = DEFAULT_TIMEOUT,
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
        step = channel.begin(key.container_id, loop.time())
        while True:
            for datagram in step.datagrams:
                transport.sendto(datagram)
                sent += 1
            if step.finished:
                break
            wait_until = min(step.timer or deadline, deadline)
            batch = await _receive(inbox, wait_until - loop.time())
            received += len(batch)
            if batch:
                step = channel.feed(batch, loop.time())
            elif loop.time() >= deadline:
                raise UnreachableError(_silence(key.uri, timeout, inbox.error))
            else:
                say("retransmitting")
                step = channel.timeout(loop.time())
            exchanges += 1
            if step.code is None and step.failure is None and exchanges == 4:
                say("waiting for the lock")
    except BaseException:
        channel.abort()
        raise
    finally:
        transport.close()
    return _outcome(key, step, time.monotonic() - started, exchanges, sent, received)


async def _receive(inbox: _Inbox, wait: float) -> list[bytes]:
    try:
        first = await asyncio.wait_for(inbox.queue.get(), timeout=max(wait, 0))
    except TimeoutError:
        return []
    batch = [first]
    # The rest of the flight was sent back to back: let the event loop read
    # what has already arrived, and wait a little longer only if nothing has.
    for delay in (0, 0, COALESCE_SECONDS):
        await asyncio.sleep(delay)
        while not inbox.queue.empty():
            batch.append(inbox.queue.get_nowait())
        if len(batch) > 1:
            break
    return batch


def _silence(uri: str, timeout: float, error: OSError | None) -> str:
    why = f" ({error.strerror})" if error and error.strerror else ""
    return f"no answer from the lock at {uri} within {timeout:g} s{why}"


def _outcome(
    key: KeyInfo, step: OpenStep, elapsed: float, exchanges: int, sent: int, received: int
) -> OpenOutcome:
    if step.failure is not None:
        if step.alert is not None:
            # The lock ended the handshake: it does not accept this key at all.
            raise RefusedError("handshake", step.failure, alert=step.alert)
        raise UnreachableError(f"the secure element gave up: {step.failure}")
    assert step.code is not None
    message = step.payload.decode("utf-8", "replace")
    if not step.code.startswith("2."):
        raise RefusedError(step.code, message or "no reason given")
    return OpenOutcome(key.label, key.uri, step.code, message, elapsed, exchanges, sent, received)
