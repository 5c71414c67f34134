"""Audit of unauthenticated refusals, aggregated so a flood cannot fill the disk.

Anyone who can send UDP to the lock can fail a handshake, as often as they
like, from as many addresses as they like. One audit row (and one log line)
per such refusal lets them fill an SD card and slow every open. So refusals of
peers that proved no key are counted per cause and period: the first few of
each cause in a period are written as ordinary rows (a lone mistyped key still
shows its peer and key id), the rest only counted, and when the period ends one
summary row says how many more there were and lists a few sampled peers.

Rows per period are bounded by ``MAX_CAUSES * (ROWS_PER_CAUSE + 1)``, whatever
the traffic. Sans-I/O: the caller passes ``now`` and writes the rows returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PERIOD = 60.0
ROWS_PER_CAUSE = 3  # written in full at the start of each period
MAX_SAMPLED_PEERS = 4  # listed in a summary row
MAX_CAUSES = 16  # distinct (action, reason) pairs per period; more fold into one
_OTHER = "other unauthenticated refusals"


@dataclass(frozen=True)
class RefusalRow:
    """An audit row to write: the same fields as ``LockStore.audit`` takes."""

    ts: float
    key_id: str | None
    peer: str
    action: str
    reason: str


@dataclass
class _Tally:
    first_ts: float
    written: int = 0
    counted: int = 0
    peers: list[str] = field(default_factory=list)
    distinct_peers: set[str] = field(default_factory=set)


class RefusalDigest:
    """Counts refusals per (action, reason) within fixed periods."""

    def __init__(self, period: float = DEFAULT_PERIOD) -> None:
        if period <= 0:
            raise ValueError("the aggregation period must be positive")
        self.period = period
        self._started: float | None = None
        self._tallies: dict[tuple[str, str], _Tally] = {}

    def record(
        self, now: float, *, peer: str, key_id: str | None, action: str, reason: str
    ) -> list[RefusalRow]:
        """Count one refusal; return the rows to write now (often none)."""
        rows = self.flush(now) if self._expired(now) else []
        if self._started is None:
            self._started = now
        cause = (action, reason)
        if cause not in self._tallies and len(self._tallies) >= MAX_CAUSES - 1:
            cause = ("various", _OTHER)  # the last of MAX_CAUSES tallies takes the rest
        tally = self._tallies.setdefault(cause, _Tally(first_ts=now))
        if tally.written < ROWS_PER_CAUSE:
            tally.written += 1
            rows.append(RefusalRow(now, key_id, peer, action, reason))
            return rows
        tally.counted += 1
        if len(tally.distinct_peers) < 10_000:  # a bounded set, for the "from N peers" figure
            tally.distinct_peers.add(peer)
        if len(tally.peers) < MAX_SAMPLED_PEERS and peer not in tally.peers:
            tally.peers.append(peer)
        return rows

    def due(self, now: float) -> bool:
        """Whether a period has ended with something still to summarise."""
        return self._expired(now)

    def flush(self, now: float) -> list[RefusalRow]:
        """End the current period: one summary row per cause with refusals only counted."""
        rows = [
            RefusalRow(
                ts=now,
                key_id=None,
                peer=_peers_text(tally),
                action=action,
                reason=(
                    f"{reason}: {tally.counted} more in {now - tally.first_ts:.0f} s"
                    f" from {_peer_count(tally)} peer(s), not written one by one"
                )[:300],
            )
            for (action, reason), tally in self._tallies.items()
            if tally.counted
        ]
        self._tallies.clear()
        self._started = None
        return rows

    def _expired(self, now: float) -> bool:
        return self._started is not None and now - self._started >= self.period


def _peers_text(tally: _Tally) -> str:
    text = ", ".join(tally.peers)
    more = len(tally.distinct_peers) - len(tally.peers)
    return (text + (f" +{more} more" if more > 0 else ""))[:100]


def _peer_count(tally: _Tally) -> str:
    count = len(tally.distinct_peers)
    return f"{count}+" if count >= 10_000 else str(count)
