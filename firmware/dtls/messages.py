"""Handshake message bodies for the DTLS 1.2 PSK client: one dataclass per message.

Only the direction the client needs is written: it pushes ClientHello,
ClientKeyExchange and Finished, and pulls the server's messages. Each ``pull_*``
reads a message body and fails on a short read or leftover bytes (aioquic's
``pull_block`` habit), raising the peer's error from ``firmware.dtls.errors``.

What we offer and what we accept back sit together here: a ServerHello or
HelloVerifyRequest that does not fit our ClientHello is refused while it is pulled,
before the client's state machine sees it.

The ClientHello carries only what tinydtls insists on (measured with DTLSSocket
0.2.3: it refuses a ClientHello without either): the extended_master_secret
extension (RFC 7627, so the master secret is bound to the handshake hash; a server
that does not echo it gets the RFC 5246 master secret) and the renegotiation SCSV
(RFC 5746, a signal, not a cipher suite). OpenSSL and GnuTLS accept the same
ClientHello.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from firmware.dtls.errors import (
    DecodeError,
    HandshakeFailureError,
    IllegalParameterError,
    ProtocolVersionError,
    UnsupportedExtensionError,
)
from firmware.dtls.records import DTLS_1_2, TLS_PSK_WITH_AES_128_CCM_8

# Handshake message types (RFC 5246 7.4, RFC 6347 4.3.2).
HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
HELLO_VERIFY_REQUEST = 3
SERVER_KEY_EXCHANGE = 12
SERVER_HELLO_DONE = 14
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20

EXT_EXTENDED_MASTER_SECRET = 0x0017  # RFC 7627
EXT_RENEGOTIATION_INFO = 0xFF01  # RFC 5746: the server's answer to the SCSV
EMPTY_RENEGOTIATION_SCSV = 0x00FF  # RFC 5746 3.3: a signal, not a cipher suite


class Reader:
    """Bounds-checked reads; every overrun or leftover is the peer's decode_error."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def eof(self) -> bool:
        return self._pos == len(self._data)

    def take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise DecodeError("message truncated")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.uint(length_size))

    def expect_end(self) -> None:
        if not self.eof():
            raise DecodeError("trailing bytes in message")


def vector(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


@dataclass(frozen=True, slots=True)
class ClientHello:
    random: bytes
    cookie: bytes = b""  # empty until a HelloVerifyRequest gives us one


def push_client_hello(hello: ClientHello) -> bytes:
    return (
        struct.pack("!H", DTLS_1_2)
        + hello.random
        + vector(1, b"")  # session_id: no resumption
        + vector(1, hello.cookie)
        + vector(2, struct.pack("!HH", TLS_PSK_WITH_AES_128_CCM_8, EMPTY_RENEGOTIATION_SCSV))
        + vector(1, b"\x00")  # null compression
        + vector(2, struct.pack("!HH", EXT_EXTENDED_MASTER_SECRET, 0))
    )


@dataclass(frozen=True, slots=True)
class HelloVerifyRequest:
    version: int
    cookie: bytes


def pull_hello_verify_request(body: bytes) -> HelloVerifyRequest:
    reader = Reader(body)
    version = reader.uint(2)
    cookie = reader.vector(1)
    reader.expect_end()
    if version >> 8 != 0xFE:
        raise ProtocolVersionError(f"HelloVerifyRequest version {version:#06x}")
    if not cookie:
        raise IllegalParameterError("empty cookie")
    return HelloVerifyRequest(version, cookie)


@dataclass(frozen=True, slots=True)
class ServerHello:
    random: bytes
    session_id: bytes
    extended_master_secret: bool  # the server echoed RFC 7627's extension


def pull_server_hello(body: bytes) -> ServerHello:
    """Read a ServerHello and refuse any choice our ClientHello did not offer."""
    reader = Reader(body)
    version = reader.uint(2)
    server_random = reader.take(32)
    session_id = reader.vector(1)
    cipher_suite = reader.uint(2)
    compression = reader.uint(1)
    seen: set[int] = set()
    if not reader.eof():
        extensions = Reader(reader.vector(2))
        reader.expect_end()
        while not extensions.eof():
            ext_type = extensions.uint(2)
            ext_data = extensions.vector(2)
            if ext_type in seen:
                raise DecodeError(f"ServerHello repeats extension {ext_type}")
            seen.add(ext_type)
            if ext_type == EXT_EXTENDED_MASTER_SECRET and ext_data:
                raise DecodeError("extended_master_secret extension with a body")
            elif ext_type == EXT_RENEGOTIATION_INFO and ext_data != b"\x00":
                # RFC 5746 3.4: an initial handshake's renegotiated_connection is empty.
                raise HandshakeFailureError("renegotiation_info is not empty")
            elif ext_type not in (EXT_EXTENDED_MASTER_SECRET, EXT_RENEGOTIATION_INFO):
                raise UnsupportedExtensionError(f"ServerHello extension {ext_type}")
    if version != DTLS_1_2:
        raise ProtocolVersionError(f"server chose version {version:#06x}")
    if len(session_id) > 32:
        raise IllegalParameterError("session_id longer than 32 bytes")
    if cipher_suite != TLS_PSK_WITH_AES_128_CCM_8:
        raise IllegalParameterError(f"server chose cipher suite {cipher_suite:#06x}")
    if compression != 0:
        raise IllegalParameterError("server chose a compression method")
    return ServerHello(server_random, session_id, EXT_EXTENDED_MASTER_SECRET in seen)


@dataclass(frozen=True, slots=True)
class ServerKeyExchange:
    psk_identity_hint: bytes  # ignored: the card knows which identity it holds


def pull_server_key_exchange(body: bytes) -> ServerKeyExchange:
    reader = Reader(body)
    hint = reader.vector(2)
    reader.expect_end()
    return ServerKeyExchange(hint)


@dataclass(frozen=True, slots=True)
class ServerHelloDone:
    pass


def pull_server_hello_done(body: bytes) -> ServerHelloDone:
    if body:
        raise DecodeError("ServerHelloDone with a body")
    return ServerHelloDone()


@dataclass(frozen=True, slots=True)
class ClientKeyExchange:
    psk_identity: bytes


def push_client_key_exchange(message: ClientKeyExchange) -> bytes:
    return vector(2, message.psk_identity)


@dataclass(frozen=True, slots=True)
class Finished:
    verify_data: bytes


def push_finished(message: Finished) -> bytes:
    return message.verify_data


def pull_finished(body: bytes) -> Finished:
    # No length check: a Finished of the wrong length simply fails to verify, and the
    # peer hears decrypt_error either way.
    return Finished(body)
