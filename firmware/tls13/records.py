"""The TLS 1.3 record layer (RFC 8446 5): framing, AES-128-GCM protection, reassembly.

Bounds, all checked on the header before a byte of body is waited for:
a TLSPlaintext fragment is at most 2^14 bytes, a TLSCiphertext at most
2^14 + 256, and a decrypted TLSInnerPlaintext at most 2^14 + 1 (record_overflow
otherwise). ``RecordReader`` therefore never holds more than one record.
``HandshakeAssembler`` joins handshake messages that span records and refuses
one larger than ``MAX_HANDSHAKE_MESSAGE``.

Each ``RecordProtection`` is one direction under one traffic secret, with its
own 64-bit sequence number starting at zero (RFC 8446 5.3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.tls13.alerts import (
    BadRecordMac,
    DecodeError,
    IllegalParameter,
    InternalError,
    RecordOverflow,
    UnexpectedMessage,
)
from firmware.tls13.key_schedule import traffic_key_iv

MAX_PLAINTEXT = 1 << 14
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256
HEADER_LENGTH = 5
TAG_LENGTH = 16
MAX_HANDSHAKE_MESSAGE = 1 << 14
_SEQUENCE_LIMIT = (1 << 64) - 1


class ContentType(enum.IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


_CONTENT_TYPES = frozenset(int(member) for member in ContentType)


@dataclass(frozen=True)
class Record:
    content_type: int
    header: bytes
    fragment: bytes


def plaintext_record(content_type: ContentType, fragment: bytes) -> bytes:
    return bytes([content_type, 3, 3]) + len(fragment).to_bytes(2, "big") + fragment


class RecordReader:
    """Cuts a byte stream, delivered in any split, into records."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_record(self) -> Record | None:
        if len(self._buffer) < HEADER_LENGTH:
            return None
        header = bytes(self._buffer[:HEADER_LENGTH])
        content_type, major, length = header[0], header[1], int.from_bytes(header[3:5], "big")
        if content_type not in _CONTENT_TYPES:
            raise UnexpectedMessage(f"record of unknown content type {content_type}")
        if major != 3:
            raise DecodeError("record version is not 3.x")
        limit = MAX_CIPHERTEXT if content_type == ContentType.APPLICATION_DATA else MAX_PLAINTEXT
        if length > limit:
            raise RecordOverflow(f"record of {length} bytes exceeds {limit}")
        if len(self._buffer) < HEADER_LENGTH + length:
            return None
        fragment = bytes(self._buffer[HEADER_LENGTH : HEADER_LENGTH + length])
        del self._buffer[: HEADER_LENGTH + length]
        return Record(content_type, header, fragment)

    @property
    def buffered(self) -> int:
        return len(self._buffer)


class RecordProtection:
    """AEAD protection of one direction under one traffic secret."""

    __slots__ = ("_aead", "_iv", "sequence")

    def __init__(self, traffic_secret: bytes) -> None:
        key, self._iv = traffic_key_iv(traffic_secret)
        self._aead = AESGCM(key)
        self.sequence = 0

    def _nonce(self) -> bytes:
        if self.sequence >= _SEQUENCE_LIMIT:
            raise InternalError("record sequence number exhausted")
        padded = self.sequence.to_bytes(12, "big")
        self.sequence += 1
        return bytes(a ^ b for a, b in zip(self._iv, padded, strict=True))

    def seal(self, content_type: ContentType, data: bytes) -> bytes:
        """One TLSCiphertext record holding *data* (at most 2^14 bytes), without padding."""
        inner = data + bytes([content_type])
        length = len(inner) + TAG_LENGTH
        header = bytes([ContentType.APPLICATION_DATA, 3, 3]) + length.to_bytes(2, "big")
        return header + self._aead.encrypt(self._nonce(), inner, header)

    def open(self, record: Record) -> tuple[int, bytes]:
        """Decrypt *record*; return its inner content type and content, padding removed."""
        if record.content_type != ContentType.APPLICATION_DATA:
            raise UnexpectedMessage("unprotected record after the keys were installed")
        if len(record.fragment) < TAG_LENGTH + 1:
            raise BadRecordMac("protected record too short to hold a tag")
        try:
            inner = self._aead.decrypt(self._nonce(), record.fragment, record.header)
        except InvalidTag:
            raise BadRecordMac("record failed authentication") from None
        if len(inner) > MAX_PLAINTEXT + 1:
            raise RecordOverflow("decrypted record exceeds 2^14 + 1 bytes")
        end = len(inner.rstrip(b"\x00"))
        if end == 0:
            raise UnexpectedMessage("protected record without a content type")
        return inner[end - 1], inner[: end - 1]

    def __repr__(self) -> str:
        return f"RecordProtection(sequence={self.sequence})"


class HandshakeAssembler:
    """Joins handshake fragments into whole messages ``(type, body, raw)``."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, fragment: bytes) -> None:
        if not fragment:
            raise UnexpectedMessage("zero-length handshake fragment")
        self._buffer += fragment
        if len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[1:4], "big")
            if length > MAX_HANDSHAKE_MESSAGE:
                raise IllegalParameter(f"handshake message of {length} bytes is too large")

    def next_message(self) -> tuple[int, bytes, bytes] | None:
        if len(self._buffer) < 4:
            return None
        length = int.from_bytes(self._buffer[1:4], "big")
        if length > MAX_HANDSHAKE_MESSAGE:
            raise IllegalParameter(f"handshake message of {length} bytes is too large")
        if len(self._buffer) < 4 + length:
            return None
        raw = bytes(self._buffer[: 4 + length])
        del self._buffer[: 4 + length]
        return raw[0], raw[4:], raw

    def require_empty(self, why: str) -> None:
        """Refuse a message that spans a key change (RFC 8446 5.1)."""
        if self._buffer:
            raise UnexpectedMessage(f"handshake data left over at a key change ({why})")
