"""The record-level half of a TLS 1.3 connection: bytes, records, alerts, events, state.

``RecordConnection`` owns everything that is not the handshake: the sans-I/O
interface (``receive`` / ``data_to_send`` / ``next_event``), record protection
per direction, handshake reassembly, alerts both ways and the named state,
changed only through ``_set_state``. ``Tls13Server`` adds the handshake by
implementing ``_handle_handshake``.

Whatever the peer sends, ``receive`` does not raise: a ``TlsAlert`` fails the
connection with that alert (queued for sending) and a ``ConnectionClosed``
event; any other exception is a bug of ours and fails it with internal_error.
"""

from __future__ import annotations

import logging
from collections import deque

from firmware.tls13.alerts import (
    AlertDescription,
    AlertLevel,
    DecodeError,
    InternalError,
    TlsAlert,
    TlsUsageError,
    UnexpectedMessage,
    describe,
)
from firmware.tls13.events import (
    HANDSHAKE_STATES,
    ApplicationData,
    ConnectionClosed,
    ServerState,
    TlsEvent,
)
from firmware.tls13.records import (
    MAX_PLAINTEXT,
    ContentType,
    HandshakeAssembler,
    Record,
    RecordProtection,
    RecordReader,
    plaintext_record,
)

logger = logging.getLogger(__name__)
S = ServerState
_ENDED = (S.CLOSED, S.FAILED)


class RecordConnection:
    def __init__(self, max_record: int = MAX_PLAINTEXT) -> None:
        if not 64 <= max_record <= MAX_PLAINTEXT:
            raise ValueError(f"max_record must be within 64..{MAX_PLAINTEXT}")
        self._max_record = max_record
        self._state = S.EXPECT_CLIENT_HELLO
        self._reader = RecordReader()
        self._assembler = HandshakeAssembler()
        self._read: RecordProtection | None = None
        self._write: RecordProtection | None = None
        self._out = bytearray()
        self._events: deque[TlsEvent] = deque()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state={self._state.name})"

    @property
    def state(self) -> ServerState:
        return self._state

    def _handle_handshake(self, msg_type: int, body: bytes, raw: bytes) -> None:
        raise NotImplementedError

    # -- the caller's side -------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self._state in _ENDED:
            return
        try:
            self._reader.feed(data)
            while self._state not in _ENDED:
                record = self._reader.next_record()
                if record is None:
                    break
                self._handle_record(record)
        except TlsAlert as exc:
            self._fail(exc)
        except Exception:  # a bug of ours must still end in an alert, not escape to the peer
            logger.exception("TLS bug while handling peer input")
            self._fail(InternalError("internal error"))

    def data_to_send(self) -> bytes:
        data, self._out = bytes(self._out), bytearray()
        return data

    def next_event(self) -> TlsEvent | None:
        return self._events.popleft() if self._events else None

    def send_application_data(self, data: bytes) -> None:
        if self._state is not S.CONNECTED:
            raise TlsUsageError(f"cannot send application data in state {self._state.name}")
        self._send(ContentType.APPLICATION_DATA, data)

    def close(self) -> None:
        """Send close_notify and end the connection (a no-op once it has ended)."""
        if self._state in _ENDED:
            return
        self._send_alert(AlertDescription.CLOSE_NOTIFY, AlertLevel.WARNING)
        self._set_state(S.CLOSED)
        self._events.append(ConnectionClosed(AlertDescription.CLOSE_NOTIFY, "closed locally"))

    # -- records ------------------------------------------------------------------------

    def _set_state(self, state: ServerState) -> None:
        logger.debug("TLS %s -> %s", self._state.name, state.name)
        self._state = state

    def _send(self, content_type: ContentType, data: bytes) -> None:
        chunks = [data[i : i + self._max_record] for i in range(0, len(data), self._max_record)]
        for chunk in chunks or [b""]:
            if self._write is None:
                self._out += plaintext_record(content_type, chunk)
            else:
                self._out += self._write.seal(content_type, chunk)

    def _send_alert(self, description: AlertDescription, level: AlertLevel) -> None:
        self._send(ContentType.ALERT, bytes([level, description]))

    def _fail(self, exc: TlsAlert) -> None:
        logger.warning("TLS connection failed: %s (%s)", exc.description.name, exc)
        self._send_alert(exc.description, AlertLevel.FATAL)
        self._set_state(S.FAILED)
        self._events.append(ConnectionClosed(exc.description, str(exc)))

    def _handle_record(self, record: Record) -> None:
        if record.content_type == ContentType.CHANGE_CIPHER_SPEC:
            # RFC 8446 5 / D.4: drop the compatibility CCS between ClientHello and Finished.
            if record.fragment != b"\x01" or self._state not in HANDSHAKE_STATES - {
                S.EXPECT_CLIENT_HELLO
            }:
                raise UnexpectedMessage("change_cipher_spec record out of place")
            return
        if self._read is None or (
            record.content_type == ContentType.ALERT and self._state in HANDSHAKE_STATES
        ):
            # Before the client's keys, or a client that failed on our ServerHello.
            content_type, content = record.content_type, record.fragment
            if content_type == ContentType.APPLICATION_DATA:
                raise UnexpectedMessage("application data before the handshake")
        else:
            content_type, content = self._read.open(record)
        if content_type == ContentType.HANDSHAKE:
            self._assembler.feed(content)
            while self._state not in _ENDED:
                message = self._assembler.next_message()
                if message is None:
                    break
                self._handle_handshake(*message)
        elif content_type == ContentType.ALERT:
            self._handle_alert(content)
        elif content_type == ContentType.APPLICATION_DATA and self._state is S.CONNECTED:
            if content:
                self._events.append(ApplicationData(content))
        else:
            raise UnexpectedMessage(f"record of type {content_type} in state {self._state.name}")

    def _handle_alert(self, content: bytes) -> None:
        if len(content) != 2:
            raise DecodeError("alert record is not two bytes")
        description = describe(content[1])
        if description == AlertDescription.USER_CANCELED:
            logger.info("TLS peer sent user_canceled; waiting for its close_notify")
            return
        if description == AlertDescription.CLOSE_NOTIFY:
            self._send_alert(AlertDescription.CLOSE_NOTIFY, AlertLevel.WARNING)
            self._set_state(S.CLOSED)
            self._events.append(ConnectionClosed(description, "closed by peer", by_peer=True))
            return
        logger.warning("TLS peer sent fatal alert %s", description)
        self._set_state(S.FAILED)
        self._events.append(ConnectionClosed(description, "alert from peer", by_peer=True))
