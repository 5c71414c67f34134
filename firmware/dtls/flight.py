"""What the DTLS client sends: per-epoch record sealing, flights, and their retransmission.

A flight (RFC 6347 4.2.4) is kept as (content type, epoch, plaintext) and sealed
again on every transmission, so each copy has fresh record sequence numbers: a
copy with reused numbers would be dropped by the peer's replay window.

``Retransmission`` is the timer side of RFC 6347 4.2.4.1: 1 s, doubling, at most
60 s, and a bounded number of resends. It holds no clock; the host passes ``now``
in, as with the rest of the client. Deciding *when* a flight is lost (the timer
fired, or the peer repeated its own flight) is the client's; this only counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware.dtls.errors import DtlsUsageError
from firmware.dtls.records import DTLS_1_2, MAX_SEQUENCE, CcmProtection, Record, encode_record

MAX_DATAGRAM_SIZE = 1152  # what we send: fits any IPv6 path with room to spare (RFC 7252 4.6)
INITIAL_TIMEOUT = 1.0  # RFC 6347 4.2.4.1
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


class Retransmission:
    """Our last flight, whether it is due, and the timer that makes it due again."""

    __slots__ = ("_due", "_flight", "_max", "_rearm", "count", "timeout", "timer")

    def __init__(self, max_retransmissions: int) -> None:
        self._max = max_retransmissions
        self._flight: Flight | None = None
        self._due = False
        self._rearm = True  # the next transmission of the flight restarts the timer
        self.timer: float | None = None
        self.timeout = INITIAL_TIMEOUT
        self.count = 0

    def start(self, flight: Flight) -> None:
        """A new flight: due at once, with a fresh timeout and retransmission budget."""
        self._flight = flight
        self._due = True
        self.timer = None
        self.timeout = INITIAL_TIMEOUT
        self.count = 0

    def stop(self) -> None:
        """The handshake is over (done or failed): nothing more to send or time."""
        self._flight = None
        self._due = False
        self.timer = None

    def to_send(self) -> Flight | None:
        return self._flight if self._flight is not None and self._due else None

    def sent(self, now: float) -> None:
        """The flight went out; the timer starts unless this was an early resend."""
        self._due = False
        if self._rearm or self.timer is None:
            self.timer = now + self.timeout
        self._rearm = True

    def resend_now(self) -> None:
        """The peer repeated its flight, so ours was lost: resend at once.

        This spends one retransmission, but the timer keeps its deadline, so a peer
        that keeps repeating cannot hold the handshake open for ever.
        """
        if self._flight is not None and self.count < self._max:
            self.count += 1
            self._due = True
            self._rearm = False

    def expired(self, now: float) -> bool:
        return self.timer is not None and now >= self.timer

    def exhausted(self) -> bool:
        return self.count >= self._max

    def back_off(self, now: float) -> None:
        """The timer fired: resend, and wait twice as long for an answer (RFC 6347 4.2.4.1)."""
        self.count += 1
        self.timeout = min(self.timeout * 2, MAX_TIMEOUT)
        self._due = True
        self.timer = now + self.timeout
