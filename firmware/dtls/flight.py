"""What the DTLS client sends: per-epoch record sealing, flights, and their retransmission.

A flight (RFC 6347 4.2.4) is kept as (content type, epoch, plaintext) and sealed
again on every transmission, so each copy has fresh record sequence numbers: a
copy with reused numbers would be dropped by the peer's replay window.

``Retransmission`` is the timer side of RFC 6347 4.2.4.1: an initial timeout,
doubling, at most 60 s, and a bounded number of resends. It holds no clock; the
host passes ``now`` in, as with the rest of the client. Deciding *when* a flight
is lost (the timer fired, or the peer repeated its own flight) is the client's;
this only counts.

The initial timeout is 1 s unless the host knows better (RFC 6347 4.2.4.1 lets
an implementation choose; RFC 9147 5.8 discusses shorter timers for links
whose round trip is known). ``LinkTimer`` then follows the link: every flight
answered without a retransmission is a round-trip sample (Karn), and the next
flight starts at RFC 6298's SRTT + 4 RTTVAR, never below ``MIN_TIMEOUT`` nor
above 1 s (or the initial value, if longer).

Each new flight starts from that estimate again, even after a flight that had
to be resent. RFC 6347 4.2.4.1 says an implementation SHOULD keep the doubled
value until a flight goes through without loss; we do not, deliberately: the
doubling protects a congested path, and one handshake flight of one or two
small datagrams is no load on any path, while on a path that merely loses
(a radio at a door) the kept timer is what turned a 20% loss into taps of
several seconds. Within a flight the timer still doubles, and the number of
resends is bounded per flight and per handshake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware.dtls.errors import DtlsUsageError
from firmware.dtls.records import DTLS_1_2, MAX_SEQUENCE, CcmProtection, Record, encode_record

MAX_DATAGRAM_SIZE = 1152  # what we send: fits any IPv6 path with room to spare (RFC 7252 4.6)
INITIAL_TIMEOUT = 1.0  # RFC 6347 4.2.4.1
MIN_TIMEOUT = 0.1  # below this, a lock's own work (an fsync) looks like loss
MAX_TIMEOUT = 60.0

Flight = list[tuple[int, int, bytes]]  # (content type, epoch, payload)


@dataclass(slots=True)
class WriteState:
    """One epoch of our side: its keys (none in epoch 0) and its next sequence number."""

    epoch: int
    protection: CcmProtection | None = field(default=None, repr=False)
    seq: int = 0

    def protect(self, content_type: int, payload: bytes) -> bytes:
        if self.seq > MAX_SEQUENCE:
            raise DtlsUsageError("record sequence numbers exhausted for this epoch")
        seq, self.seq = self.seq, self.seq + 1
        fragment = payload
        if self.protection is not None:
            fragment = self.protection.seal(content_type, DTLS_1_2, self.epoch, seq, payload)
        return encode_record(Record(content_type, DTLS_1_2, self.epoch, seq, fragment))


def pack_flight(write: list[WriteState], flight: Flight) -> list[bytes]:
    """Seal each record with a fresh sequence number and pack them into datagrams."""
    datagrams: list[bytes] = []
    current = b""
    for content_type, epoch, payload in flight:
        record = write[epoch].protect(content_type, payload)
        if current and len(current) + len(record) > MAX_DATAGRAM_SIZE:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


class LinkTimer:
    """The timeout a new flight starts with, learnt from the link (RFC 6298 2, Karn)."""

    __slots__ = ("ceiling", "rttvar", "srtt", "timeout")

    def __init__(self, initial: float = INITIAL_TIMEOUT) -> None:
        self.timeout = min(max(initial, MIN_TIMEOUT), MAX_TIMEOUT)
        # A host's hint may be too short for the link: the estimate may then grow to
        # RFC 6347's 1 s (or the hint, if longer), beyond which doubling takes over.
        self.ceiling = max(self.timeout, INITIAL_TIMEOUT)
        self.srtt: float | None = None
        self.rttvar = 0.0

    def sample(self, rtt: float) -> None:
        """A flight answered without a resend took ``rtt`` seconds (host clock)."""
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.timeout = min(max(self.srtt + 4 * self.rttvar, MIN_TIMEOUT), self.ceiling)


class Retransmission:
    """Our last flight, whether it is due, and the timer that makes it due again.

    ``budget`` bounds the resends of the whole handshake (each flight also has
    ``max_retransmissions``), so the card's work per Open is bounded whatever
    the link does.
    """

    __slots__ = (
        "_due",
        "_first_sent",
        "_flight",
        "_max",
        "_rearm",
        "budget",
        "count",
        "link",
        "timeout",
        "timer",
    )

    def __init__(
        self, max_retransmissions: int, *, link: LinkTimer | None = None, budget: int = 1 << 16
    ) -> None:
        self._max = max_retransmissions
        self.link = link or LinkTimer()
        self.budget = budget
        self._flight: Flight | None = None
        self._due = False
        self._rearm = True  # the next transmission of the flight restarts the timer
        self._first_sent: float | None = None
        self.timer: float | None = None
        self.timeout = self.link.timeout
        self.count = 0

    def start(self, flight: Flight, now: float | None = None) -> None:
        """A new flight: due at once, with a fresh timeout and retransmission budget."""
        self._answered(now)
        self._flight = flight
        self._due = True
        self.timer = None
        self.timeout = self.link.timeout
        self.count = 0
        self._first_sent = None

    def stop(self, now: float | None = None) -> None:
        """The handshake is over (done or failed): nothing more to send or time."""
        self._answered(now)
        self._flight = None
        self._due = False
        self.timer = None

    def _answered(self, now: float | None) -> None:
        """The peer answered the current flight: learn from it."""
        if self._flight is None or now is None:
            return
        if self.count == 0 and self._first_sent is not None:
            self.link.sample(now - self._first_sent)

    def to_send(self) -> Flight | None:
        return self._flight if self._flight is not None and self._due else None

    def sent(self, now: float) -> None:
        """The flight went out; the timer starts unless this was an early resend."""
        self._due = False
        if self._first_sent is None:
            self._first_sent = now
        if self._rearm or self.timer is None:
            self.timer = now + self.timeout
        self._rearm = True

    def resend_now(self) -> None:
        """The peer repeated its flight, so ours was lost: resend at once.

        This spends one retransmission, but the timer keeps its deadline, so a peer
        that keeps repeating cannot hold the handshake open for ever.
        """
        if self._flight is not None and self.count < self._max and self.budget > 0:
            self.count += 1
            self.budget -= 1
            self._due = True
            self._rearm = False

    def expired(self, now: float) -> bool:
        return self.timer is not None and now >= self.timer

    def exhausted(self) -> bool:
        return self.count >= self._max or self.budget <= 0

    def back_off(self, now: float) -> None:
        """The timer fired: resend, and wait twice as long for an answer (RFC 6347 4.2.4.1)."""
        self.count += 1
        self.budget -= 1
        self.timeout = min(self.timeout * 2, MAX_TIMEOUT)
        self._due = True
        self.timer = now + self.timeout
