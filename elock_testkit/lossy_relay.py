"""A UDP relay that drops datagrams, for testing Open over a bad link.

It sits between one client and one server on loopback and drops each datagram
with a given probability in each direction, from a seeded RNG so a failing run
can be replayed. Runs in a thread so that blocking test code can use it.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class LossyRelay:
    target: tuple[str, int]
    loss: float = 0.2
    seed: int = 1
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
                        data, self._client = self._front.recvfrom(65535)
                        if self._keep():
                            self._back.send(data)
                    else:
                        data = self._back.recv(65535)
                        if self._client is not None and self._keep():
                            self._front.sendto(data, self._client)
                except OSError:
                    continue  # ICMP port unreachable from a peer that went away

    def _keep(self) -> bool:
        if self._rng.random() < self.loss:
            self.dropped += 1
            return False
        self.forwarded += 1
        return True
