"""Who may start a card sync now: a rate and a share of the slots per client, a cap at once.

The card-sync endpoint is open to anyone (a host holds no credential), so what
an anonymous flood costs must be bounded before any certificate is parsed or
any database row read: a token bucket per client (``per_minute``, bursts up
to the same number), at most ``per_address`` syncs of one client at once, and
at most ``concurrent`` syncs in this process. The rate alone would not do: a
sync holds its slot until its host answers or the push timeout runs out, so
one client could take every slot with a burst and keep them.

A client is its IPv4 address, or the /64 of its IPv6 address: one subscriber
gets a whole /64 and could otherwise take a new address for every sync. The
table of clients is bounded too (least recently seen forgotten first), so a
flood from many addresses fills no memory. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

MAX_ADDRESSES = 10_000


def client_of(address: str) -> str:
    """The key a client is counted under: the address, or the /64 of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address  # not an address (a test client, a Unix socket): as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class SyncGate:
    def __init__(self, *, per_minute: int, concurrent: int, per_address: int | None = None) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(per_minute)
        self.concurrent = concurrent
        self.per_address = concurrent if per_address is None else per_address
        self.running = 0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._running: dict[str, int] = {}  # syncs running, per client

    def __repr__(self) -> str:
        return f"SyncGate(running={self.running}/{self.concurrent}, tracked={len(self._buckets)})"

    def admit(self, address: str, now: float) -> int:
        """0 and one sync started, or the seconds to wait before trying again."""
        client = client_of(address)
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._remember(client, tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        if self._running.get(client, 0) >= self.per_address:
            self._remember(client, tokens - 1.0, now)  # its own doing: the try counts
            return 1
        if self.running >= self.concurrent:
            self._remember(client, tokens, now)
            return 1
        self._remember(client, tokens - 1.0, now)
        self.running += 1
        self._running[client] = self._running.get(client, 0) + 1
        return 0

    def done(self, address: str) -> None:
        """A sync that ``admit`` started for *address* has ended."""
        self.running = max(0, self.running - 1)
        client = client_of(address)
        left = self._running.pop(client, 0) - 1
        if left > 0:
            self._running[client] = left

    def _remember(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
