"""Sans-I/O DTLS 1.2 PSK client: the applet's side of Open (RFC 6347, RFC 7925 profile).

One suite, TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8), null compression, no resumption,
no renegotiation.

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

A flight is sent again when the timer fires or at once when the server repeats
its ServerHelloDone; the connection fails after ``max_retransmissions`` resends of
one flight or ``max_total_retransmissions`` in the whole handshake, which bounds
the card's work per Open. The timer starts at ``initial_timeout`` (1 s, RFC 6347
4.2.4.1, unless the host knows the link) and then follows the round trips the
client measures (``dtls_flight.LinkTimer``); ``retransmission_timeout`` shows
the current estimate to the layer above. A server
that answers a repeated ClientHello with a *new* ServerHello (tinydtls does) is
followed rather than ignored.

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

This module is the state machine. What it drives lives beside it:
``dtls_messages`` (message bodies), ``dtls_fragments`` (the handshake header and
reassembly), ``dtls_keys`` (the handshake hash and key derivation),
``dtls_flight`` (sealing, flights and their timer), ``dtls_errors`` (alerts and
the two kinds of failure) and ``dtls_records`` (records and the PRF).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from firmware.dtls.errors import (
    ALERT_FATAL,
    ALERT_WARNING,
    AlertDescription,
    DecodeError,
    DtlsUsageError,
    HandshakeFailureError,
    PeerError,
    UnexpectedMessageError,
)
from firmware.dtls.flight import (
    INITIAL_TIMEOUT,
    MAX_DATAGRAM_SIZE,
    LinkTimer,
    Retransmission,
    WriteState,
    pack_flight,
)
from firmware.dtls.fragments import (
    HandshakeFragment,
    HandshakeInbox,
    HandshakeMessage,
    contains_message_type,
    pull_fragments,
    push_handshake,
)
from firmware.dtls.keys import KeySchedule
from firmware.dtls.messages import (
    CLIENT_HELLO,
    CLIENT_KEY_EXCHANGE,
    FINISHED,
    HELLO_REQUEST,
    HELLO_VERIFY_REQUEST,
    SERVER_HELLO,
    SERVER_HELLO_DONE,
    SERVER_KEY_EXCHANGE,
    ClientHello,
    ClientKeyExchange,
    pull_finished,
    pull_hello_verify_request,
    pull_server_hello,
    pull_server_hello_done,
    pull_server_key_exchange,
    push_client_hello,
    push_client_key_exchange,
)
from firmware.dtls.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    MAX_PLAINTEXT,
    RECORD_HEADER_SIZE,
    RECORD_OVERHEAD,
    TLS_PSK_WITH_AES_128_CCM_8,
    CcmProtection,
    Record,
    RecordError,
    ReplayWindow,
    parse_records,
)

__all__ = [
    "MAX_APPLICATION_DATA",
    "AlertDescription",
    "ApplicationDataReceived",
    "ConnectionTerminated",
    "DtlsClient",
    "DtlsEvent",
    "DtlsState",
    "DtlsUsageError",
    "HandshakeCompleted",
]

log = logging.getLogger(__name__)

MAX_RECEIVE_DATAGRAM = 2048  # larger datagrams are dropped unread
MAX_PENDING_EVENTS = 64
MAX_QUEUED_DATAGRAMS = 64  # alerts and application data the host has not collected yet
MAX_EARLY_RECORDS = 4  # next-epoch records held until the ChangeCipherSpec that opens them
MAX_IDENTITY = 128  # RFC 4279 allows 2^16-1; ours keeps the last flight in one datagram
MAX_PSK = 64  # RFC 4279 5.3: at least 64 octets must be supported
MAX_HELLO_VERIFY = 3  # also bounds how often a server may restart with a new ServerHello
MAX_APPLICATION_DATA = MAX_DATAGRAM_SIZE - RECORD_HEADER_SIZE - RECORD_OVERHEAD


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


class DtlsClient:
    """DTLS 1.2 client with TLS_PSK_WITH_AES_128_CCM_8; see the module docstring."""

    def __init__(
        self,
        identity: bytes,
        psk: bytes,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        max_retransmissions: int = 6,
        max_total_retransmissions: int = 12,
        initial_timeout: float = INITIAL_TIMEOUT,
    ) -> None:
        if not 1 <= len(identity) <= MAX_IDENTITY:
            raise DtlsUsageError(f"PSK identity must be 1..{MAX_IDENTITY} bytes")
        if not 1 <= len(psk) <= MAX_PSK:
            raise DtlsUsageError(f"PSK must be 1..{MAX_PSK} bytes")
        if max_retransmissions < 0 or max_total_retransmissions < 0:
            raise DtlsUsageError("retransmission limits must be >= 0")
        if not initial_timeout > 0:
            raise DtlsUsageError("initial_timeout must be > 0")
        self._identity = bytes(identity)
        self._psk: bytes | None = bytes(psk)
        self._rng = rng
        self._state = DtlsState.CLIENT_IDLE
        self._keys = KeySchedule()
        self._cookie = b""
        self._hello_verify_count = 0
        self._client_hello = b""  # the handshake hash restarts from it (see _server_restarted)
        self._server_hello_seq = -1
        self._server_hello_body = b""
        self._restarts = 0
        self._send_message_seq = 0
        self._inbox = HandshakeInbox()
        self._write = [WriteState(0)]
        self._read_epoch = 0
        self._read_protection: CcmProtection | None = None
        self._pending_read_protection: CcmProtection | None = None
        self._replay = ReplayWindow()
        self._early: list[Record] = []  # epoch-1 records that came before the server's CCS
        self._link = LinkTimer(initial_timeout)
        self._flight = Retransmission(
            max_retransmissions, link=self._link, budget=max_total_retransmissions
        )
        self._now: float | None = None  # the time of the datagram being handled
        self._peer_answered = False
        self._peer_repeated_flight = False
        self._queued: list[bytes] = []
        self._events: deque[DtlsEvent] = deque()

    def __repr__(self) -> str:
        return f"<DtlsClient state={self._state.name}>"

    @property
    def state(self) -> DtlsState:
        return self._state

    @property
    def peer_answered(self) -> bool:
        """Whether a handshake message from the server was accepted (the lock is there)."""
        return self._peer_answered

    @property
    def retransmission_timeout(self) -> float:
        """What a new flight would wait before its first resend: the link's estimate."""
        return self._link.timeout

    # -- the host's API ----------------------------------------------------------------

    def connect(self, now: float) -> None:
        if self._state is not DtlsState.CLIENT_IDLE:
            raise DtlsUsageError("connect() may be called once, on a new client")
        self._keys.client_random = self._random(32)
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
        self._now = now
        for record in records:
            if self._state in _ENDED:
                break
            try:
                self._handle_record(record)
            except PeerError as exc:
                log.warning("peer error in %s: %s", self._state.name, exc)
                self._fail(exc.description, f"{exc.description.name}: {exc}")
        if self._peer_repeated_flight and self._state in _HANDSHAKING:
            # RFC 6347 4.2.4: the peer repeated its last flight, so ours was lost.
            self._flight.resend_now()

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        flight = self._flight.to_send()
        if flight is not None:
            out.extend(pack_flight(self._write, flight))
            self._flight.sent(now)
        out.extend(self._queued)
        self._queued.clear()
        return out

    def get_timer(self) -> float | None:
        return self._flight.timer

    def handle_timer(self, now: float) -> None:
        if not self._flight.expired(now):
            return
        if self._flight.exhausted():
            self._terminate("handshake timed out", None, from_peer=False)
            return
        self._flight.back_off(now)
        log.debug(
            "retransmitting flight (%d), next timeout %.0f s",
            self._flight.count,
            self._flight.timeout,
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
        self._flight.stop()
        self._inbox.clear()
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

    def _next_message_seq(self) -> int:
        seq, self._send_message_seq = self._send_message_seq, self._send_message_seq + 1
        return seq

    def _send_client_hello(self) -> None:
        body = push_client_hello(ClientHello(self._keys.client_random, self._cookie))
        message = push_handshake(CLIENT_HELLO, self._next_message_seq(), body)
        self._keys.restart(message)
        self._client_hello = message
        self._flight.start([(CT_HANDSHAKE, 0, message)], self._now)

    def _send_key_exchange_and_finished(self) -> None:
        psk = self._psk
        if psk is None:  # unreachable: the PSK is dropped only when the connection ends
            raise HandshakeFailureError("no PSK")
        body = push_client_key_exchange(ClientKeyExchange(self._identity))
        cke = push_handshake(CLIENT_KEY_EXCHANGE, self._next_message_seq(), body)
        keys = self._keys.derive(psk, cke, self._next_message_seq())
        self._psk = None
        self._write.append(WriteState(1, keys.write))
        self._pending_read_protection = keys.read
        self._flight.start(
            [
                (CT_HANDSHAKE, 0, cke),
                (CT_CHANGE_CIPHER_SPEC, 0, b"\x01"),
                (CT_HANDSHAKE, 1, keys.finished),
            ],
            self._now,
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
            # Other epochs are not decryptable (yet) or stale, and are dropped; but an
            # old ServerHelloDone after our CCS means the server repeated its flight.
            if (
                record.epoch < self._read_epoch
                and record.content_type == CT_HANDSHAKE
                and contains_message_type(record.fragment, SERVER_HELLO_DONE)
            ):
                self._peer_repeated_flight = True
            return
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

    def _on_change_cipher_spec(self, payload: bytes) -> None:
        if payload != b"\x01":
            raise DecodeError("malformed ChangeCipherSpec")
        if self._state is not DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC:
            raise UnexpectedMessageError(f"ChangeCipherSpec in {self._state.name}")
        self._read_protection = self._pending_read_protection
        self._pending_read_protection = None
        self._read_epoch = 1
        self._inbox.clear()  # nothing from epoch 0 may complete an epoch-1 message
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
        for fragment in pull_fragments(payload):
            if fragment.message_seq < self._inbox.next_seq:
                if fragment.msg_type == SERVER_HELLO_DONE:
                    self._peer_repeated_flight = True
                if not self._server_restarted(fragment):
                    continue
            self._inbox.add(fragment)
        while self._state in _ALLOWED:
            message = self._inbox.pop()
            if message is None:
                break
            self._on_handshake_message(message)

    def _server_restarted(self, fragment: HandshakeFragment) -> bool:
        """A *different* ServerHello again, before our ClientKeyExchange: start over from it.

        RFC 6347 4.2.4 wants a server that sees our ClientHello again to repeat its
        flight; tinydtls instead starts a new handshake with a new ServerHello. Taking
        the new one (the handshake hash restarts at our ClientHello) keeps the handshake
        alive; it gives an attacker nothing it could not do with the first ServerHello.
        """
        if (
            fragment.msg_type != SERVER_HELLO
            or self._state not in _AWAITING_HELLO_DONE
            or fragment.message_seq != self._server_hello_seq
            or not fragment.is_whole
            or fragment.data == self._server_hello_body
            or self._restarts >= MAX_HELLO_VERIFY
        ):
            return False
        log.info("server sent a new ServerHello: restarting from it")
        self._restarts += 1
        self._keys.restart(self._client_hello)
        self._inbox.restart_at(fragment.message_seq)
        self._set_state(DtlsState.CLIENT_EXPECT_HELLO_VERIFY_OR_SERVER_HELLO)
        return True

    def _on_handshake_message(self, message: HandshakeMessage) -> None:
        msg_type, body = message.msg_type, message.body
        if msg_type not in _ALLOWED[self._state]:
            raise UnexpectedMessageError(f"handshake message {msg_type} in {self._state.name}")
        whole = push_handshake(msg_type, message.message_seq, body)
        self._peer_answered = True
        if msg_type == HELLO_VERIFY_REQUEST:
            self._on_hello_verify_request(body)
        elif msg_type == SERVER_HELLO:
            self._on_server_hello(body)
            self._server_hello_seq, self._server_hello_body = message.message_seq, body
            self._keys.update(whole)
            self._set_state(DtlsState.CLIENT_EXPECT_SERVER_KEY_EXCHANGE_OR_HELLO_DONE)
        elif msg_type == SERVER_KEY_EXCHANGE:
            pull_server_key_exchange(body)
            self._keys.update(whole)
            self._set_state(DtlsState.CLIENT_EXPECT_SERVER_HELLO_DONE)
        elif msg_type == SERVER_HELLO_DONE:
            pull_server_hello_done(body)
            self._keys.update(whole)
            self._send_key_exchange_and_finished()
            self._set_state(DtlsState.CLIENT_EXPECT_CHANGE_CIPHER_SPEC)
        elif msg_type == FINISHED:
            self._keys.verify_server_finished(pull_finished(body))
            self._flight.stop(self._now)
            self._set_state(DtlsState.CONNECTED)
            self._event(HandshakeCompleted())
        else:  # HelloRequest: we never renegotiate (RFC 5246 7.4.1.1)
            self._send_alert(ALERT_WARNING, AlertDescription.no_renegotiation)

    def _on_hello_verify_request(self, body: bytes) -> None:
        hello_verify = pull_hello_verify_request(body)
        self._hello_verify_count += 1
        if self._hello_verify_count > MAX_HELLO_VERIFY:
            raise HandshakeFailureError("too many HelloVerifyRequests")
        self._cookie = hello_verify.cookie
        self._inbox.clear()
        self._send_client_hello()  # same random, new message_seq (RFC 6347 4.2.1)

    def _on_server_hello(self, body: bytes) -> None:
        hello = pull_server_hello(body)
        self._keys.server_random = hello.random
        self._keys.extended_master_secret = hello.extended_master_secret
        if not hello.extended_master_secret:
            log.info("server does not support the extended master secret (RFC 7627)")
