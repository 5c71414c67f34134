"""Sans-I/O DTLS 1.2 PSK client: the applet's side of Open (RFC 6347, RFC 7925 profile).

One suite, TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8), null compression, no resumption,
no renegotiation. The ClientHello carries only what tinydtls insists on (measured:
it refuses a ClientHello without either): the extended_master_secret extension
(RFC 7627, so the master secret is bound to the handshake hash; a server that
does not echo it gets the RFC 5246 master secret) and the renegotiation SCSV
(RFC 5746, a signal, not a cipher suite). OpenSSL and GnuTLS accept the same
ClientHello.

The object never touches a socket, a thread or the clock: like aioquic's
connection, the host passes datagrams and the time in and takes datagrams and
events out::

    client.connect(now)                      -> ClientHello
    client.receive_datagram(data, now)       (any number of times)
    client.datagrams_to_send(now)            -> list of datagrams, arms the timer
    client.get_timer() / handle_timer(now)   retransmission (RFC 6347 4.2.4)
    client.next_event()                      -> HandshakeCompleted, ApplicationDataReceived,
                                                ConnectionTerminated

The handshake, flight by flight (RFC 6347 4.2.1, RFC 4279)::

    ClientHello                     ->
                                    <- HelloVerifyRequest (cookie)
    ClientHello (cookie)            ->
                                    <- ServerHello, [ServerKeyExchange], ServerHelloDone
    ClientKeyExchange, CCS, Finished ->           (one datagram)
                                    <- CCS, Finished

The handshake hash starts with the ClientHello that carries the cookie: the first
ClientHello and the HelloVerifyRequest are left out (RFC 6347 4.2.1).

Retransmission (RFC 6347 4.2.4): a flight is sent again when the timer fires
(1 s, doubling, at most 60 s; the connection fails after ``max_retransmissions``)
or at once when the server repeats its ServerHelloDone (that spends one
retransmission too). Each transmission is sealed again with fresh record
sequence numbers. A server that answers a repeated ClientHello with a *new*
ServerHello (tinydtls does) is followed rather than ignored.

Two kinds of failure are kept apart. Misusing the API (sending before the
handshake is done, a bad PSK length) raises ``DtlsUsageError``. A peer that
misbehaves never makes a method raise: a record that does not parse or does not
authenticate is dropped (RFC 6347 4.1.2.7); a message that breaks the handshake
sends a fatal alert and ends the connection with a ``ConnectionTerminated``
event carrying the alert code.

Every buffer is bounded: datagrams in (2048 bytes), handshake messages (2048),
messages held ahead of order (4), early epoch-1 records (4), pending events
(64), queued datagrams (64).

Nothing the object returns or shows holds the PSK or a key: the PSK and the
master secret are dropped as soon as the keys are derived (Python cannot wipe
them; a Java Card port would), and ``repr`` shows only the state.
"""

from __future__ import annotations

import hmac
import logging
import os
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import ClassVar

from cryptography.hazmat.primitives import hashes

from firmware.dtls_records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    DTLS_1_2,
    MAX_PLAINTEXT,
    MAX_SEQUENCE,
    RECORD_HEADER_SIZE,
    RECORD_OVERHEAD,
    TLS_PSK_WITH_AES_128_CCM_8,
    CcmProtection,
    KeyBlock,
    Record,
    RecordError,
    ReplayWindow,
    encode_record,
    extended_master_secret,
    finished_verify_data,
    master_secret,
    parse_records,
    psk_premaster_secret,
)

log = logging.getLogger(__name__)

MAX_DATAGRAM_SIZE = 1152  # what we send: fits any IPv6 path with room to spare (RFC 7252 4.6)
MAX_RECEIVE_DATAGRAM = 2048  # larger datagrams are dropped unread
MAX_HANDSHAKE_MESSAGE = 2048  # a PSK server's messages are far smaller
MAX_BUFFERED_MESSAGES = 4  # handshake messages held ahead of the next expected one
MAX_PENDING_EVENTS = 64
MAX_QUEUED_DATAGRAMS = 64  # alerts and application data the host has not collected yet
MAX_EARLY_RECORDS = 4  # next-epoch records held until the ChangeCipherSpec that opens them
MAX_IDENTITY = 128  # RFC 4279 allows 2^16-1; ours keeps the last flight in one datagram
MAX_PSK = 64  # RFC 4279 5.3: at least 64 octets must be supported
MAX_HELLO_VERIFY = 3
INITIAL_TIMEOUT = 1.0  # RFC 6347 4.2.4.1
MAX_TIMEOUT = 60.0
HANDSHAKE_HEADER_SIZE = 12
MAX_APPLICATION_DATA = MAX_DATAGRAM_SIZE - RECORD_HEADER_SIZE - RECORD_OVERHEAD

# Handshake message types (RFC 5246 7.4, RFC 6347 4.3.2).
HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
HELLO_VERIFY_REQUEST = 3
SERVER_KEY_EXCHANGE = 12
SERVER_HELLO_DONE = 14
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20

# tinydtls refuses a ClientHello without these two (measured with DTLSSocket 0.2.3).
EXT_EXTENDED_MASTER_SECRET = 0x0017  # RFC 7627
EXT_RENEGOTIATION_INFO = 0xFF01  # RFC 5746: the server's answer to the SCSV
EMPTY_RENEGOTIATION_SCSV = 0x00FF  # RFC 5746 3.3: a signal, not a cipher suite

ALERT_WARNING = 1
ALERT_FATAL = 2


class AlertDescription(IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    illegal_parameter = 47
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    internal_error = 80
    no_renegotiation = 100
    unsupported_extension = 110


class DtlsUsageError(Exception):
    """The caller misused the API (a local error, never caused by the peer)."""


class _PeerError(Exception):
    """The peer broke the protocol; ``description`` is the fatal alert we answer with."""

    description: ClassVar[AlertDescription] = AlertDescription.internal_error


class _UnexpectedMessageError(_PeerError):
    description = AlertDescription.unexpected_message


class _DecodeError(_PeerError):
    description = AlertDescription.decode_error


class _IllegalParameterError(_PeerError):
    description = AlertDescription.illegal_parameter


class _HandshakeFailureError(_PeerError):
    description = AlertDescription.handshake_failure


class _DecryptError(_PeerError):
    description = AlertDescription.decrypt_error


class _ProtocolVersionError(_PeerError):
    description = AlertDescription.protocol_version


class _UnsupportedExtensionError(_PeerError):
    description = AlertDescription.unsupported_extension


class DtlsState(Enum):
    CLIENT_IDLE = "idle"
    CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO = "expect HelloVerifyRequest or ServerHello"
    CLIENT_EXPECT_SERVER_KEY_EXCHANGE_OR_HELLO_DONE = "expect ServerKeyExchange or HelloDone"
    CLIENT_EXPECT_SERVER_HELLO_DONE = "expect ServerHelloDone"
    CLIENT_EXPECT_CHANGE_CIPHER_SPEC = "expect ChangeCipherSpec"
    CLIENT_EXPECT_FINISHED = "expect Finished"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


_S = DtlsState
# The handshake messages each state accepts; anything else is unexpected_message.
_ALLOWED: dict[DtlsState, frozenset[int]] = {
    _S.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO: frozenset({HELLO_VERIFY_REQUEST, SERVER_HELLO}),
    _S.CLIENT_EXPECT_SERVER_KEY_EXCHANGE_OR_HELLO_DONE: frozenset(
        {SERVER_KEY_EXCHANGE, SERVER_HELLO_DONE}
    ),
    _S.CLIENT_EXPECT_SERVER_HELLO_DONE: frozenset({SERVER_HELLO_DONE}),
    _S.CLIENT_EXPECT_CHANGE_CIPHER_SPEC: frozenset(),
    _S.CLIENT_EXPECT_FINISHED: frozenset({FINISHED}),
    _S.CONNECTED: frozenset({HELLO_REQUEST}),
}
_HANDSHAKING = frozenset(set(_ALLOWED) - {_S.CONNECTED})
_AWAITING_HELLO_DONE = frozenset(
    {_S.CLIENT_EXPECT_SERVER_KEY_EXCHANGE_OR_HELLO_DONE, _S.CLIENT_EXPECT_SERVER_HELLO_DONE}
)
_ENDED = frozenset({_S.CLOSED, _S.FAILED})


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    cipher_suite: int = TLS_PSK_WITH_AES_128_CCM_8


@dataclass(frozen=True, slots=True)
class ApplicationDataReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The connection ended: ``alert`` is the alert sent or received (None: a timeout)."""

    reason: str
    alert: int | None
    from_peer: bool


DtlsEvent = HandshakeCompleted | ApplicationDataReceived | ConnectionTerminated


class _Reader:
    """Bounds-checked reads; every overrun or leftover is the peer's decode_error."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def eof(self) -> bool:
        return self._pos == len(self._data)

    def take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise _DecodeError("message truncated")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.uint(length_size))

    def expect_end(self) -> None:
        if not self.eof():
            raise _DecodeError("trailing bytes in message")


def _vector(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def _handshake(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """A whole handshake message in DTLS form (offset 0, fragment = whole body)."""
    n = len(body).to_bytes(3, "big")
    return struct.pack("!B3sH3s3s", msg_type, n, message_seq, b"\0\0\0", n) + body


class _Reassembly:
    """One handshake message being rebuilt from fragments (RFC 6347 4.2.3)."""

    __slots__ = ("body", "length", "missing", "msg_type", "seen")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.body = bytearray(length)
        self.seen = bytearray(length)
        self.missing = length

    def add(self, offset: int, fragment: bytes) -> None:
        end = offset + len(fragment)
        self.body[offset:end] = fragment
        self.missing -= len(fragment) - sum(self.seen[offset:end])
        self.seen[offset:end] = b"\x01" * len(fragment)


@dataclass(slots=True)
class _WriteState:
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


class DtlsClient:
    """DTLS 1.2 client with TLS_PSK_WITH_AES_128_CCM_8; see the module docstring."""

    def __init__(
        self,
        identity: bytes,
        psk: bytes,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        max_retransmissions: int = 6,
    ) -> None:
        if not 1 <= len(identity) <= MAX_IDENTITY:
            raise DtlsUsageError(f"PSK identity must be 1..{MAX_IDENTITY} bytes")
        if not 1 <= len(psk) <= MAX_PSK:
            raise DtlsUsageError(f"PSK must be 1..{MAX_PSK} bytes")
        if max_retransmissions < 0:
            raise DtlsUsageError("max_retransmissions must be >= 0")
        self._identity = bytes(identity)
        self._psk: bytes | None = bytes(psk)
        self._rng = rng
        self._max_retransmissions = max_retransmissions
        self._state = DtlsState.CLIENT_IDLE
        self._client_random = b""
        self._server_random = b""
        self._cookie = b""
        self._hello_verify_count = 0
        self._client_hello = b""
        self._server_hello_seq = -1
        self._server_hello_body = b""
        self._restarts = 0
        self._extended_master_secret = False
        self._transcript = hashes.Hash(hashes.SHA256())
        self._expected_server_verify: bytes | None = None
        self._send_message_seq = 0
        self._recv_message_seq = 0
        self._reassembly: dict[int, _Reassembly] = {}
        self._write = [_WriteState(0)]
        self._read_epoch = 0
        self._read_protection: CcmProtection | None = None
        self._pending_read_protection: CcmProtection | None = None
        self._replay = ReplayWindow()
        self._early: list[Record] = []  # epoch-1 records that came before the server's CCS
        self._flight: list[tuple[int, int, bytes]] | None = None  # (type, epoch, payload)
        self._flight_due = False
        self._rearm = True  # the next transmission of the flight restarts the timer
        self._peer_repeated_flight = False
        self._queued: list[bytes] = []
        self._timer: float | None = None
        self._timeout = INITIAL_TIMEOUT
        self._retransmissions = 0
        self._events: deque[DtlsEvent] = deque()

    def __repr__(self) -> str:
        return f"<DtlsClient state={self._state.name}>"

    @property
    def state(self) -> DtlsState:
        return self._state

    # -- the host's API ----------------------------------------------------------------

    def connect(self, now: float) -> None:
        if self._state is not DtlsState.CLIENT_IDLE:
            raise DtlsUsageError("connect() may be called once, on a new client")
        self._client_random = self._random(32)
        self._send_client_hello()
        self._set_state(DtlsState.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO)

    def receive_datagram(self, data: bytes, now: float) -> None:
        if self._state is DtlsState.CLIENT_IDLE or self._state in _ENDED:
            return
        if len(data) > MAX_RECEIVE_DATAGRAM:
            log.warning("dropping a %d-byte datagram", len(data))
            return
        try:
            records = parse_records(bytes(data), MAX_PLAINTEXT + RECORD_OVERHEAD)
        except RecordError as exc:
            log.warning("dropping a malformed datagram: %s", exc)
            return
        self._peer_repeated_flight = False
        for record in records:
            if self._state in _ENDED:
                break
            try:
                self._handle_record(record)
            except _PeerError as exc:
                log.warning("peer error in %s: %s", self._state.name, exc)
                self._fail(exc.description, f"{exc.description.name}: {exc}")
        if (
            self._peer_repeated_flight
            and self._flight is not None
            and self._state in _HANDSHAKING
            and self._retransmissions < self._max_retransmissions
        ):
            # RFC 6347 4.2.4: the peer repeated its last flight, so ours was lost. This
            # spends one retransmission; the timer keeps its deadline.
            self._retransmissions += 1
            self._flight_due = True
            self._rearm = False

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        if self._flight is not None and self._flight_due:
            out.extend(self._pack_flight(self._flight))
            self._flight_due = False
            if self._rearm or self._timer is None:
                self._timer = now + self._timeout
            self._rearm = True
        out.extend(self._queued)
        self._queued.clear()
        return out

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        if self._retransmissions >= self._max_retransmissions:
            self._terminate("handshake timed out", None, from_peer=False)
            return
        self._retransmissions += 1
        self._timeout = min(self._timeout * 2, MAX_TIMEOUT)
        self._flight_due = True
        self._timer = now + self._timeout
        log.debug(
            "retransmitting flight (%d), next timeout %.0f s", self._retransmissions, self._timeout
        )

    def send_application_data(self, data: bytes) -> None:
        if self._state is not DtlsState.CONNECTED:
            raise DtlsUsageError(f"cannot send application data in state {self._state.name}")
        if len(data) > MAX_APPLICATION_DATA:
            raise DtlsUsageError(f"application data over {MAX_APPLICATION_DATA} bytes")
        if len(self._queued) >= MAX_QUEUED_DATAGRAMS:
            raise DtlsUsageError("too many datagrams queued: call datagrams_to_send()")
        self._queued.append(self._write[-1].protect(CT_APPLICATION_DATA, bytes(data)))

    def close(self) -> None:
        if self._state in _ENDED:
            return
        if self._state is not DtlsState.CLIENT_IDLE:
            self._send_alert(ALERT_WARNING, AlertDescription.close_notify)
        self._terminate(
            "closed locally", AlertDescription.close_notify, from_peer=False, state=DtlsState.CLOSED
        )

    def next_event(self) -> DtlsEvent | None:
        return self._events.popleft() if self._events else None

    # -- state ---------------------------------------------------------------------------

    def _set_state(self, state: DtlsState) -> None:
        log.debug("DTLS client: %s -> %s", self._state.name, state.name)
        self._state = state

    def _random(self, n: int) -> bytes:
        out = self._rng(n)
        if len(out) != n:
            raise DtlsUsageError(f"rng returned {len(out)} bytes instead of {n}")
        return out

    def _event(self, event: DtlsEvent) -> None:
        if isinstance(event, ApplicationDataReceived) and len(self._events) >= MAX_PENDING_EVENTS:
            log.warning("event queue full: dropping application data")
            return
        self._events.append(event)

    def _terminate(
        self,
        reason: str,
        alert: int | None,
        *,
        from_peer: bool,
        state: DtlsState = DtlsState.FAILED,
    ) -> None:
        self._flight = None
        self._flight_due = False
        self._timer = None
        self._reassembly.clear()
        self._early.clear()
        self._psk = None
        self._set_state(state)
        self._event(ConnectionTerminated(reason, alert, from_peer))

    def _fail(self, description: AlertDescription, reason: str) -> None:
        self._send_alert(ALERT_FATAL, description)
        self._terminate(reason, description, from_peer=False)

    # -- sending -------------------------------------------------------------------------

    def _send_alert(self, level: int, description: int) -> None:
        if level == ALERT_WARNING and len(self._queued) >= MAX_QUEUED_DATAGRAMS:
            return  # a peer that keeps provoking warnings gets no more of them
        self._queued.append(self._write[-1].protect(CT_ALERT, bytes([level, description])))

    def _new_flight(self, records: list[tuple[int, int, bytes]]) -> None:
        self._flight = records
        self._flight_due = True
        self._timer = None
        self._timeout = INITIAL_TIMEOUT
        self._retransmissions = 0

    def _pack_flight(self, flight: list[tuple[int, int, bytes]]) -> list[bytes]:
        """Protect each record with a fresh sequence number and pack them into datagrams."""
        datagrams: list[bytes] = []
        current = b""
        for content_type, epoch, payload in flight:
            record = self._write[epoch].protect(content_type, payload)
            if current and len(current) + len(record) > MAX_DATAGRAM_SIZE:
                datagrams.append(current)
                current = b""
            current += record
        if current:
            datagrams.append(current)
        return datagrams

    def _next_message_seq(self) -> int:
        seq, self._send_message_seq = self._send_message_seq, self._send_message_seq + 1
        return seq

    def _send_client_hello(self) -> None:
        body = (
            struct.pack("!H", DTLS_1_2)
            + self._client_random
            + _vector(1, b"")  # session_id: no resumption
            + _vector(1, self._cookie)
            + _vector(2, struct.pack("!HH", TLS_PSK_WITH_AES_128_CCM_8, EMPTY_RENEGOTIATION_SCSV))
            + _vector(1, b"\x00")  # null compression
            + _vector(2, struct.pack("!HH", EXT_EXTENDED_MASTER_SECRET, 0))
        )
        message = _handshake(CLIENT_HELLO, self._next_message_seq(), body)
        self._transcript = hashes.Hash(hashes.SHA256())
        self._transcript.update(message)
        self._client_hello = message
        self._new_flight([(CT_HANDSHAKE, 0, message)])

    def _transcript_hash(self) -> bytes:
        return self._transcript.copy().finalize()

    def _send_key_exchange_and_finished(self) -> None:
        psk = self._psk
        if psk is None:  # unreachable: the PSK is dropped only when the connection ends
            raise _HandshakeFailureError("no PSK")
        cke = _handshake(CLIENT_KEY_EXCHANGE, self._next_message_seq(), _vector(2, self._identity))
        self._transcript.update(cke)
        premaster = psk_premaster_secret(psk)
        if self._extended_master_secret:  # RFC 7627 4: bound to the whole handshake so far
            master = extended_master_secret(premaster, self._transcript_hash())
        else:
            master = master_secret(premaster, self._client_random, self._server_random)
        self._psk = None
        keys = KeyBlock.derive(master, self._client_random, self._server_random)
        self._write.append(
            _WriteState(1, CcmProtection(keys.client_write_key, keys.client_write_iv))
        )
        self._pending_read_protection = CcmProtection(keys.server_write_key, keys.server_write_iv)
        verify = finished_verify_data(master, b"client finished", self._transcript_hash())
        finished = _handshake(FINISHED, self._next_message_seq(), verify)
        self._transcript.update(finished)
        self._expected_server_verify = finished_verify_data(
            master, b"server finished", self._transcript_hash()
        )
        del master, keys
        self._new_flight(
            [
                (CT_HANDSHAKE, 0, cke),
                (CT_CHANGE_CIPHER_SPEC, 0, b"\x01"),
                (CT_HANDSHAKE, 1, finished),
            ]
        )

    # -- receiving -----------------------------------------------------------------------

    def _handle_record(self, record: Record) -> None:
        if (
            record.epoch == self._read_epoch + 1
            and self._state is DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC
            and len(self._early) < MAX_EARLY_RECORDS
        ):
            self._early.append(record)  # the server's Finished overtook its CCS: keep it
            return
        if record.epoch != self._read_epoch:
            if record.epoch < self._read_epoch and record.content_type == CT_HANDSHAKE:
                self._note_old_handshake(record.fragment)
            return  # other epochs: not decryptable (yet) or stale; dropped
        payload = record.fragment
        if self._read_protection is not None:
            if not self._replay.is_fresh(record.seq):
                log.debug("dropping a replayed record (seq %d)", record.seq)
                return
            try:
                payload = self._read_protection.open(record)
            except RecordError:
                log.warning("dropping a record that does not authenticate")
                return
            self._replay.mark(record.seq)
        if record.content_type == CT_HANDSHAKE:
            self._on_handshake_fragments(payload)
        elif record.content_type == CT_CHANGE_CIPHER_SPEC:
            self._on_change_cipher_spec(payload)
        elif record.content_type == CT_ALERT:
            self._on_alert(payload)
        elif self._state is DtlsState.CONNECTED and self._read_protection is not None:
            self._event(ApplicationDataReceived(payload))
        else:
            log.debug("dropping application data before the handshake completed")

    def _note_old_handshake(self, payload: bytes) -> None:
        """An epoch-0 handshake record after our CCS: is it the server's repeated flight?"""
        pos = 0
        while len(payload) - pos >= HANDSHAKE_HEADER_SIZE:
            if payload[pos] == SERVER_HELLO_DONE:
                self._peer_repeated_flight = True
                return
            pos += HANDSHAKE_HEADER_SIZE + int.from_bytes(payload[pos + 9 : pos + 12], "big")

    def _on_change_cipher_spec(self, payload: bytes) -> None:
        if payload != b"\x01":
            raise _DecodeError("malformed ChangeCipherSpec")
        if self._state is not DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC:
            raise _UnexpectedMessageError(f"ChangeCipherSpec in {self._state.name}")
        self._read_protection = self._pending_read_protection
        self._pending_read_protection = None
        self._read_epoch = 1
        self._reassembly.clear()  # nothing from epoch 0 may complete an epoch-1 message
        self._set_state(DtlsState.CLIENT_EXPECT_FINISHED)
        early, self._early = self._early, []
        for record in early:
            if self._state not in _ENDED:
                self._handle_record(record)

    def _on_alert(self, payload: bytes) -> None:
        if len(payload) != 2:
            log.warning("dropping a malformed alert")
            return
        level, description = payload
        try:
            name = AlertDescription(description).name
        except ValueError:
            name = f"alert {description}"
        if description == AlertDescription.close_notify:
            if self._state is DtlsState.CONNECTED:
                self._send_alert(ALERT_WARNING, AlertDescription.close_notify)
            self._terminate("closed by peer", description, from_peer=True, state=DtlsState.CLOSED)
        elif level == ALERT_FATAL:
            log.warning("peer sent fatal alert %s in %s", name, self._state.name)
            self._terminate(f"peer sent fatal alert {name}", description, from_peer=True)
        else:
            log.info("peer sent warning alert %s", name)

    def _on_handshake_fragments(self, payload: bytes) -> None:
        reader = _Reader(payload)
        while not reader.eof():
            msg_type = reader.uint(1)
            length = reader.uint(3)
            message_seq = reader.uint(2)
            offset = reader.uint(3)
            fragment = reader.vector(3)
            if offset + len(fragment) > length:
                raise _DecodeError("handshake fragment beyond its message")
            if length > MAX_HANDSHAKE_MESSAGE:
                raise _HandshakeFailureError(f"handshake message of {length} bytes is too large")
            if message_seq < self._recv_message_seq:
                if msg_type == SERVER_HELLO_DONE:
                    self._peer_repeated_flight = True
                if not self._server_restarted(msg_type, message_seq, length, fragment):
                    continue
            if message_seq >= self._recv_message_seq + MAX_BUFFERED_MESSAGES:
                continue
            buffer = self._reassembly.get(message_seq)
            if buffer is None:
                buffer = self._reassembly[message_seq] = _Reassembly(msg_type, length)
            elif (buffer.msg_type, buffer.length) != (msg_type, length):
                raise _IllegalParameterError("fragments of one message disagree on type or length")
            buffer.add(offset, fragment)
        while self._state in _ALLOWED:
            ready = self._reassembly.get(self._recv_message_seq)
            if ready is None or ready.missing:
                break
            message_seq = self._recv_message_seq
            del self._reassembly[message_seq]
            self._recv_message_seq += 1
            self._on_handshake_message(ready.msg_type, bytes(ready.body), message_seq)

    def _server_restarted(
        self, msg_type: int, message_seq: int, length: int, fragment: bytes
    ) -> bool:
        """A *different* ServerHello again, before our ClientKeyExchange: start over from it.

        RFC 6347 4.2.4 wants a server that sees our ClientHello again to repeat its
        flight; tinydtls instead starts a new handshake with a new ServerHello. Taking
        the new one (the handshake hash restarts at our ClientHello) keeps the handshake
        alive; it gives an attacker nothing it could not do with the first ServerHello.
        """
        if (
            msg_type != SERVER_HELLO
            or self._state not in _AWAITING_HELLO_DONE
            or message_seq != self._server_hello_seq
            or len(fragment) != length
            or fragment == self._server_hello_body
            or self._restarts >= MAX_HELLO_VERIFY
        ):
            return False
        log.info("server sent a new ServerHello: restarting from it")
        self._restarts += 1
        self._transcript = hashes.Hash(hashes.SHA256())
        self._transcript.update(self._client_hello)
        self._reassembly.clear()
        self._recv_message_seq = message_seq
        self._set_state(DtlsState.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO)
        return True

    def _on_handshake_message(self, msg_type: int, body: bytes, message_seq: int) -> None:
        if msg_type not in _ALLOWED[self._state]:
            raise _UnexpectedMessageError(f"handshake message {msg_type} in {self._state.name}")
        whole = _handshake(msg_type, message_seq, body)
        if msg_type == HELLO_VERIFY_REQUEST:
            self._on_hello_verify_request(body)
        elif msg_type == SERVER_HELLO:
            self._on_server_hello(body)
            self._server_hello_seq, self._server_hello_body = message_seq, body
            self._transcript.update(whole)
            self._set_state(DtlsState.CLIENT_EXPECT_SERVER_KEY_EXCHANGE_OR_HELLO_DONE)
        elif msg_type == SERVER_KEY_EXCHANGE:
            reader = _Reader(body)
            reader.vector(2)  # psk_identity_hint: ignored, the card knows its identity
            reader.expect_end()
            self._transcript.update(whole)
            self._set_state(DtlsState.CLIENT_EXPECT_SERVER_HELLO_DONE)
        elif msg_type == SERVER_HELLO_DONE:
            if body:
                raise _DecodeError("ServerHelloDone with a body")
            self._transcript.update(whole)
            self._send_key_exchange_and_finished()
            self._set_state(DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC)
        elif msg_type == FINISHED:
            self._on_finished(body)
        else:  # HelloRequest: we never renegotiate (RFC 5246 7.4.1.1)
            self._send_alert(ALERT_WARNING, AlertDescription.no_renegotiation)

    def _on_hello_verify_request(self, body: bytes) -> None:
        reader = _Reader(body)
        version = reader.uint(2)
        cookie = reader.vector(1)
        reader.expect_end()
        if version >> 8 != 0xFE:
            raise _ProtocolVersionError(f"HelloVerifyRequest version {version:#06x}")
        if not cookie:
            raise _IllegalParameterError("empty cookie")
        self._hello_verify_count += 1
        if self._hello_verify_count > MAX_HELLO_VERIFY:
            raise _HandshakeFailureError("too many HelloVerifyRequests")
        self._cookie = cookie
        self._reassembly.clear()
        self._send_client_hello()  # same random, new message_seq (RFC 6347 4.2.1)

    def _on_server_hello(self, body: bytes) -> None:
        reader = _Reader(body)
        version = reader.uint(2)
        server_random = reader.take(32)
        session_id = reader.vector(1)
        cipher_suite = reader.uint(2)
        compression = reader.uint(1)
        seen: set[int] = set()
        if not reader.eof():
            extensions = _Reader(reader.vector(2))
            reader.expect_end()
            while not extensions.eof():
                ext_type = extensions.uint(2)
                ext_data = extensions.vector(2)
                if ext_type in seen:
                    raise _DecodeError(f"ServerHello repeats extension {ext_type}")
                seen.add(ext_type)
                if ext_type == EXT_EXTENDED_MASTER_SECRET and ext_data:
                    raise _DecodeError("extended_master_secret extension with a body")
                elif ext_type == EXT_RENEGOTIATION_INFO and ext_data != b"\x00":
                    # RFC 5746 3.4: an initial handshake's renegotiated_connection is empty.
                    raise _HandshakeFailureError("renegotiation_info is not empty")
                elif ext_type not in (EXT_EXTENDED_MASTER_SECRET, EXT_RENEGOTIATION_INFO):
                    raise _UnsupportedExtensionError(f"ServerHello extension {ext_type}")
        if version != DTLS_1_2:
            raise _ProtocolVersionError(f"server chose version {version:#06x}")
        if len(session_id) > 32:
            raise _IllegalParameterError("session_id longer than 32 bytes")
        if cipher_suite != TLS_PSK_WITH_AES_128_CCM_8:
            raise _IllegalParameterError(f"server chose cipher suite {cipher_suite:#06x}")
        if compression != 0:
            raise _IllegalParameterError("server chose a compression method")
        self._server_random = server_random
        self._extended_master_secret = EXT_EXTENDED_MASTER_SECRET in seen
        if not self._extended_master_secret:
            log.info("server does not support the extended master secret (RFC 7627)")

    def _on_finished(self, body: bytes) -> None:
        expected = self._expected_server_verify
        if expected is None or not hmac.compare_digest(body, expected):
            raise _DecryptError("server Finished does not verify")
        self._expected_server_verify = None
        self._flight = None
        self._flight_due = False
        self._timer = None
        self._set_state(DtlsState.CONNECTED)
        self._event(HandshakeCompleted())
