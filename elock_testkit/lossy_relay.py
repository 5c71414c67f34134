"""A UDP relay that drops datagrams, for testing Open over a bad link.

It sits between one client and one server on loopback and drops datagrams in
each direction: either by a ``pattern`` (a function of the direction, the
datagram's index in that direction and its bytes: tests use these, so a test
loses exactly the datagram it means to), or with a given probability from a
seeded RNG, so a bench run can be replayed. Runs in a thread so that blocking
test code can use it.

Like a NAT, it gives each new client address its own upstream socket, so a
server sees each client (each tap of a bench) as a new peer, never as the
previous tap's half-finished session.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

UP, DOWN = "up", "down"  # client -> server, server -> client
# (direction, index of the datagram in that direction from 0, datagram) -> drop it?
DropPattern = Callable[[str, int, bytes], bool]


def content_types(datagram: bytes) -> list[int]:
    """The content type of each DTLS record in a datagram (23 = application data)."""
    found, offset = [], 0
    while offset + 13 <= len(datagram):
        found.append(datagram[offset])
        offset += 13 + int.from_bytes(datagram[offset + 11 : offset + 13], "big")
    return found


def drop_application_data(direction: str) -> DropPattern:
    """Every datagram carrying application data one way: the CoAP request or its answer."""
    return lambda way, index, datagram: way == direction and 23 in content_types(datagram)


def drop_all(direction: str) -> DropPattern:
    return lambda way, index, datagram: way == direction


def drop_after(direction: str, count: int) -> DropPattern:
    """Let the first ``count`` datagrams one way through, then none."""
    return lambda way, index, datagram: way == direction and index >= count


def drop_indices(up: set[int], down: set[int]) -> DropPattern:
    return lambda way, index, datagram: index in (up if way == UP else down)


@dataclass
class LossyRelay:
    target: tuple[str, int]
    loss: float = 0.2
    seed: int = 1
    pattern: DropPattern | None = None
    forwarded: int = 0
    dropped: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.connect(self.target)
        self._client: tuple[str, int] | None = None
        self._counts = {UP: 0, DOWN: 0}
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def port(self) -> int:
        return int(self._front.getsockname()[1])

    def __enter__(self) -> LossyRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._front.close()
        self._back.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._front, selectors.EVENT_READ, "up")
        sel.register(self._back, selectors.EVENT_READ, "down")
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                try:
                    if key.data == "up":
                        data, client = self._front.recvfrom(65535)
                        if self._client is not None and client != self._client:
                            self._new_mapping(sel)
                        self._client = client
                        if self._keep(UP, data):
                            self._back.send(data)
                    else:
                        data = self._back.recv(65535)
                        if self._client is not None and self._keep(DOWN, data):
                            self._front.sendto(data, self._client)
                except OSError:
                    continue  # ICMP port unreachable from a peer that went away

    def _new_mapping(self, sel: selectors.BaseSelector) -> None:
        sel.unregister(self._back)
        self._back.close()
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.connect(self.target)
        self._back.setblocking(False)  # an event of the old socket may still be in this batch
        sel.register(self._back, selectors.EVENT_READ, "down")

    def _keep(self, direction: str, data: bytes) -> bool:
        index = self._counts[direction]
        self._counts[direction] += 1
        if self.pattern is not None:
            lost = self.pattern(direction, index, data)
        else:
            lost = self._rng.random() < self.loss
        if lost:
            self.dropped += 1
            return False
        self.forwarded += 1
        return True
