"""Who may start a card sync now: a rate per client address and a cap on syncs at once.

The card-sync endpoint is open to anyone (a host holds no credential), so what
an anonymous flood costs must be bounded before any certificate is parsed or
any database row read: a token bucket per address (``per_minute``, bursts up
to the same number), and at most ``concurrent`` syncs in this process. The
table of addresses is bounded too (least recently seen forgotten first), so a
flood from many addresses fills no memory. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

MAX_ADDRESSES = 10_000


class SyncGate:
    def __init__(self, *, per_minute: int, concurrent: int) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(per_minute)
        self.concurrent = concurrent
        self.running = 0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __repr__(self) -> str:
        return f"SyncGate(running={self.running}/{self.concurrent}, tracked={len(self._buckets)})"

    def admit(self, address: str, now: float) -> int:
        """0 and one sync started, or the seconds to wait before trying again."""
        tokens, at = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._remember(address, tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        if self.running >= self.concurrent:
            self._remember(address, tokens, now)
            return 1
        self._remember(address, tokens - 1.0, now)
        self.running += 1
        return 0

    def done(self) -> None:
        """A sync that ``admit`` started has ended."""
        self.running = max(0, self.running - 1)

    def _remember(self, address: str, tokens: float, now: float) -> None:
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
