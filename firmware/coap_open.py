"""Open: one CoAP request over a fresh DTLS-PSK session, sans-I/O, as the card runs it.

``OpenSession`` joins ``DtlsClient`` and the CoAP codec. The key host only
carries datagrams: each exchange (one APDU in the card) hands the session the
datagrams that arrived and takes back the datagrams to send. With no loss and a
server that answers with a piggybacked response, an Open takes five exchanges::

    (1) connect()                                  -> ClientHello
    (2) HelloVerifyRequest                         -> ClientHello with the cookie
    (3) ServerHello, [ServerKeyExchange], ServerHelloDone
                                                   -> ClientKeyExchange, CCS, Finished
                                                      (one datagram)
    (4) server CCS, Finished                       -> the CoAP request (CON, with a token
                                                      and message id from ``rng``)
    (5) the CoAP response                          -> ``OpenResult`` event, and a
                                                      close_notify the host may send

Measured: five exchanges against tinydtls (in memory), libcoap's
coap-server-openssl and coap-server-gnutls (over UDP); see tests/firmware.

A server that first sends an empty ACK and later a separate CON response costs
one exchange more; the session acknowledges that response (RFC 7252 5.2.2).
The request is retransmitted per RFC 7252 4.2 (random factor 1.5, MAX_RETRANSMIT
4), the handshake per RFC 6347 4.2.4; the host drives both through
``get_timer`` / ``handle_timer``. The request goes out in the same exchange as
the server's Finished: that is as soon as DTLS 1.2 allows, since False Start
(RFC 7918) needs a forward-secret key exchange and PSK has none.

Timers follow the link. The handshake's start at ``initial_timeout`` (the
host's knowledge of the link, else RFC 6347's 1 s) and then at what the DTLS
client measured; the request's ACK_TIMEOUT is twice that estimate (the lock
also writes its audit row before it answers), never more than RFC 7252's 2 s
(its 4.8.1 lets an application adjust it to the link).

The end is exactly one event: ``OpenResult(code, payload)`` or
``OpenFailed(reason, alert, kind)``. ``progress`` says how far the Open got,
which is what tells a lock that never answered (the door is shut) from a
request whose answer was lost (the door may be open).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from firmware.coap_message import (
    OPTION_CONTENT_FORMAT,
    CoapFormatError,
    CoapMessage,
    CoapsUri,
    MessageType,
    Method,
    decode_message,
    encode_message,
    encode_uint,
    split_coaps_uri,
)
from firmware.dtls.client import (
    ApplicationDataReceived,
    ConnectionTerminated,
    DtlsClient,
    DtlsState,
    DtlsUsageError,
    HandshakeCompleted,
)

log = logging.getLogger(__name__)

ACK_TIMEOUT = 2.0  # RFC 7252 4.8: the most the request waits for its first answer
MIN_ACK_TIMEOUT = 0.2
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
SEPARATE_RESPONSE_TIMEOUT = 30.0  # a door that answers later than this has not opened
TOKEN_SIZE = 8


class OpenState(Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    AWAITING_RESPONSE = "request sent, awaiting ACK or response"
    AWAITING_SEPARATE_RESPONSE = "request acknowledged, awaiting separate response"
    DONE = "done"
    FAILED = "failed"


class OpenProgress(IntEnum):
    """How far an Open got; only a request that went out can have opened the door."""

    NO_ANSWER = 0  # nothing from the lock yet
    ANSWERED = 1  # the lock answered a handshake flight
    REQUEST_SENT = 2  # the handshake finished and the request went out


class FailureKind(IntEnum):
    """Why an Open ended without a CoAP response (the card's TAG_FAILURE)."""

    TIMEOUT = 1  # retransmissions used up with no (further) answer
    PEER_ALERT = 2  # the lock ended the session with a fatal alert
    PEER_ERROR = 3  # the lock broke the protocol and we ended the session
    RESET = 4  # the lock answered the request with RST
    LOCAL = 5  # abandoned by our side


_ENDED = frozenset({OpenState.DONE, OpenState.FAILED})
_WAITING = frozenset({OpenState.AWAITING_RESPONSE, OpenState.AWAITING_SEPARATE_RESPONSE})


@dataclass(frozen=True, slots=True)
class OpenResult:
    code: str  # "2.04"
    payload: bytes = field(default=b"")


@dataclass(frozen=True, slots=True)
class OpenFailed:
    reason: str
    alert: int | None = None
    kind: FailureKind = FailureKind.TIMEOUT


OpenEvent = OpenResult | OpenFailed


class OpenSession:
    """One Open: DTLS handshake, one CoAP request, its response; see the module docstring."""

    def __init__(
        self,
        identity: bytes,
        psk: bytes,
        uri: str,
        method: str = "POST",
        payload: bytes = b"",
        *,
        rng: Callable[[int], bytes] = os.urandom,
        content_format: int | None = None,
        max_retransmissions: int = 6,
        max_total_retransmissions: int = 12,
        initial_timeout: float = 1.0,
        separate_timeout: float = SEPARATE_RESPONSE_TIMEOUT,
    ) -> None:
        try:
            self._method = Method[method.upper()]
        except KeyError:
            raise DtlsUsageError(f"unsupported method {method!r}") from None
        self.uri: CoapsUri = split_coaps_uri(uri)
        self._payload = bytes(payload)
        self._content_format = content_format
        self._rng = rng
        self._separate_timeout = separate_timeout
        self._dtls = DtlsClient(
            identity,
            psk,
            rng=rng,
            max_retransmissions=max_retransmissions,
            max_total_retransmissions=max_total_retransmissions,
            initial_timeout=initial_timeout,
        )
        self._state = OpenState.IDLE
        self._progress = OpenProgress.NO_ANSWER
        self._token = b""
        self._message_id = 0
        self._request = b""
        self._timer: float | None = None
        self._timeout = ACK_TIMEOUT
        self._retransmissions = 0
        self._events: deque[OpenEvent] = deque()

    def __repr__(self) -> str:
        return f"<OpenSession {self._state.name} {self.uri.host}:{self.uri.port}>"

    @property
    def state(self) -> OpenState:
        return self._state

    @property
    def progress(self) -> OpenProgress:
        return self._progress

    def connect(self, now: float) -> None:
        if self._state is not OpenState.IDLE:
            raise DtlsUsageError("connect() may be called once")
        self._dtls.connect(now)
        self._set_state(OpenState.HANDSHAKING)

    def receive_datagram(self, data: bytes, now: float) -> None:
        if self._state is OpenState.IDLE or self._state in _ENDED:
            return
        self._dtls.receive_datagram(data, now)
        if self._progress is OpenProgress.NO_ANSWER and self._dtls.peer_answered:
            self._progress = OpenProgress.ANSWERED
        self._drain(now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        return self._dtls.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        timers = [t for t in (self._dtls.get_timer(), self._timer) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        if self._state in _ENDED:
            return
        self._dtls.handle_timer(now)
        self._drain(now)
        if self._timer is None or now < self._timer or self._state in _ENDED:
            return
        if self._state is OpenState.AWAITING_RESPONSE and self._retransmissions < MAX_RETRANSMIT:
            self._retransmissions += 1
            self._timeout *= 2
            self._timer = now + self._timeout
            self._send(self._request)
            log.debug("retransmitting the CoAP request (%d)", self._retransmissions)
        else:
            self._fail("timed out waiting for the CoAP response", None, FailureKind.TIMEOUT)

    def next_event(self) -> OpenEvent | None:
        return self._events.popleft() if self._events else None

    def close(self) -> None:
        """Abandon the Open (queues a close_notify if a session is up)."""
        if self._state not in _ENDED:
            self._fail("closed locally", None, FailureKind.LOCAL)

    # -- internals -----------------------------------------------------------------------

    def _set_state(self, state: OpenState) -> None:
        log.debug("Open: %s -> %s", self._state.name, state.name)
        self._state = state

    def _fail(self, reason: str, alert: int | None, kind: FailureKind) -> None:
        self._timer = None
        self._set_state(OpenState.FAILED)
        self._events.append(OpenFailed(reason, alert, kind))
        self._dtls.close()

    def _drain(self, now: float) -> None:
        while (event := self._dtls.next_event()) is not None:
            if self._state in _ENDED:
                continue
            if isinstance(event, HandshakeCompleted):
                self._send_request(now)
            elif isinstance(event, ApplicationDataReceived):
                self._on_coap(event.data, now)
            elif isinstance(event, ConnectionTerminated):
                stage = "handshake failed" if self._state is OpenState.HANDSHAKING else "DTLS ended"
                if event.alert is None:
                    kind = FailureKind.TIMEOUT
                else:
                    kind = FailureKind.PEER_ALERT if event.from_peer else FailureKind.PEER_ERROR
                self._fail(f"{stage}: {event.reason}", event.alert, kind)

    def _send_request(self, now: float) -> None:
        self._token = self._rng(TOKEN_SIZE)
        self._message_id = int.from_bytes(self._rng(2), "big")
        options = self.uri.request_options()
        if self._content_format is not None:
            options.append((OPTION_CONTENT_FORMAT, encode_uint(self._content_format)))
        self._request = encode_message(
            CoapMessage(
                MessageType.CON,
                int(self._method),
                self._message_id,
                self._token,
                tuple(options),
                self._payload,
            )
        )
        self._send(self._request)
        self._progress = OpenProgress.REQUEST_SENT
        # RFC 7252 4.2: the first timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * factor],
        # with ACK_TIMEOUT fitted to the link the handshake measured (RFC 7252 4.8.1).
        ack_timeout = min(max(2 * self._dtls.retransmission_timeout, MIN_ACK_TIMEOUT), ACK_TIMEOUT)
        fraction = int.from_bytes(self._rng(2), "big") / 0xFFFF
        self._timeout = ack_timeout * (1 + (ACK_RANDOM_FACTOR - 1) * fraction)
        self._timer = now + self._timeout
        self._set_state(OpenState.AWAITING_RESPONSE)

    def _send(self, data: bytes) -> None:
        # The DTLS session may have ended in the datagram that carried this event
        # (a close_notify after the response); then there is nothing to send on.
        if self._dtls.state is DtlsState.CONNECTED:
            self._dtls.send_application_data(data)

    def _send_empty(self, message_type: MessageType, message_id: int) -> None:
        self._send(encode_message(CoapMessage(message_type, 0, message_id)))

    def _on_coap(self, data: bytes, now: float) -> None:
        try:
            message = decode_message(data)
        except CoapFormatError as exc:
            log.warning("dropping a malformed CoAP message: %s", exc)
            return
        if self._state not in _WAITING:
            return
        ours = message.message_id == self._message_id
        if message.type is MessageType.ACK and ours:
            if message.is_empty:
                if self._state is OpenState.AWAITING_RESPONSE:
                    self._timer = now + self._separate_timeout
                    self._set_state(OpenState.AWAITING_SEPARATE_RESPONSE)
            elif message.token == self._token and message.is_response:
                self._finish(message)
            else:
                log.warning("ACK for our request with another token or no response code")
        elif message.type is MessageType.RST and ours:
            self._fail("the server reset the request (RST)", None, FailureKind.RESET)
        elif message.type in (MessageType.CON, MessageType.NON):
            if message.token == self._token and message.is_response:
                if message.type is MessageType.CON:
                    self._send_empty(MessageType.ACK, message.message_id)
                self._finish(message)
            elif message.type is MessageType.CON:
                self._send_empty(MessageType.RST, message.message_id)  # RFC 7252 4.2

    def _finish(self, message: CoapMessage) -> None:
        self._timer = None
        self._set_state(OpenState.DONE)
        self._events.append(OpenResult(message.code_string, message.payload))
        self._dtls.close()
