"""TLS 1.3 handshake messages (RFC 8446 4): one dataclass each, with pull/push.

``pull_*`` take the message body (after the 4-byte handshake header) and raise
``TlsAlert`` subclasses; ``push_*`` return the body. ``handshake_message``
adds the header. Only what this server's profile needs is given a typed field;
other extensions are kept raw so they can be ignored safely.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

from firmware.tls13.alerts import DecodeError, IllegalParameter
from firmware.tls13.wire import (
    Buffer,
    Extension,
    Writer,
    pull_block,
    pull_extensions,
    pull_opaque,
    pull_uint16_list,
    push_extensions,
)

TLS12 = 0x0303  # legacy_version of every TLS 1.3 hello
TLS13 = 0x0304
AES_128_GCM_SHA256 = 0x1301
SECP256R1 = 0x0017
ECDSA_SECP256R1_SHA256 = 0x0403
# RFC 8446 4.1.3: a HelloRetryRequest is a ServerHello with this random.
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()


class HandshakeType(enum.IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    CERTIFICATE_REQUEST = 13
    CERTIFICATE_VERIFY = 15
    FINISHED = 20
    KEY_UPDATE = 24
    MESSAGE_HASH = 254


class ExtensionType(enum.IntEnum):
    SERVER_NAME = 0
    SUPPORTED_GROUPS = 10
    SIGNATURE_ALGORITHMS = 13
    SUPPORTED_VERSIONS = 43
    CERTIFICATE_AUTHORITIES = 47
    KEY_SHARE = 51


_TYPED_CLIENT_EXTENSIONS = frozenset(
    {
        ExtensionType.SUPPORTED_VERSIONS,
        ExtensionType.SUPPORTED_GROUPS,
        ExtensionType.SIGNATURE_ALGORITHMS,
        ExtensionType.KEY_SHARE,
    }
)


@dataclass(frozen=True)
class KeyShareEntry:
    group: int
    key_exchange: bytes = field(repr=False)


@dataclass(frozen=True)
class ClientHello:
    random: bytes
    legacy_session_id: bytes
    cipher_suites: list[int]
    legacy_compression_methods: bytes = b"\x00"
    supported_versions: list[int] | None = None
    supported_groups: list[int] | None = None
    signature_algorithms: list[int] | None = None
    key_shares: list[KeyShareEntry] | None = None
    other_extensions: list[Extension] = field(default_factory=list)
    legacy_version: int = TLS12


def _pull_key_shares(data: bytes) -> list[KeyShareEntry]:
    buf = Buffer(data)
    shares: list[KeyShareEntry] = []
    with pull_block(buf, 2) as inner:
        while not inner.eof():
            shares.append(KeyShareEntry(inner.pull_uint16(), pull_opaque(inner, 2, minimum=1)))
    if not buf.eof():
        raise DecodeError("bytes after the key_share list")
    return shares


def _whole(data: bytes, size: int, *, minimum: int = 0) -> list[int]:
    buf = Buffer(data)
    values = pull_uint16_list(buf, size)
    if not buf.eof() or len(values) < minimum:
        raise DecodeError("malformed list extension")
    return values


def pull_client_hello(body: bytes) -> ClientHello:
    buf = Buffer(body)
    legacy_version = buf.pull_uint16()
    random = buf.pull_bytes(32)
    session_id = pull_opaque(buf, 1)
    if len(session_id) > 32:
        raise DecodeError("legacy_session_id longer than 32 bytes")
    suites = pull_uint16_list(buf, 2)
    compression = pull_opaque(buf, 1, minimum=1)
    extensions = pull_extensions(buf) if not buf.eof() else []
    if not buf.eof():
        raise DecodeError("bytes after the ClientHello extensions")
    typed: dict[int, bytes] = {}
    others: list[Extension] = []
    for ext_type, data in extensions:
        if ext_type in _TYPED_CLIENT_EXTENSIONS:
            typed[ext_type] = data
        else:
            others.append((ext_type, data))
    versions = None
    if ExtensionType.SUPPORTED_VERSIONS in typed:
        versions_buf = Buffer(typed[ExtensionType.SUPPORTED_VERSIONS])
        versions = pull_uint16_list(versions_buf, 1)
        if not versions_buf.eof() or not versions:
            raise DecodeError("malformed supported_versions")
    groups = typed.get(ExtensionType.SUPPORTED_GROUPS)
    algorithms = typed.get(ExtensionType.SIGNATURE_ALGORITHMS)
    shares = typed.get(ExtensionType.KEY_SHARE)
    return ClientHello(
        random=random,
        legacy_session_id=session_id,
        cipher_suites=suites,
        legacy_compression_methods=compression,
        supported_versions=versions,
        supported_groups=None if groups is None else _whole(groups, 2, minimum=1),
        signature_algorithms=None if algorithms is None else _whole(algorithms, 2, minimum=1),
        key_shares=None if shares is None else _pull_key_shares(shares),
        other_extensions=others,
        legacy_version=legacy_version,
    )


def push_client_hello(hello: ClientHello) -> bytes:
    out = Writer()
    out.push_uint16(hello.legacy_version)
    out.push_bytes(hello.random)
    out.push_opaque(hello.legacy_session_id, 1)
    out.push_uint16_list(hello.cipher_suites, 2)
    out.push_opaque(hello.legacy_compression_methods, 1)
    extensions: list[Extension] = []
    if hello.supported_versions is not None:
        ext = Writer()
        ext.push_uint16_list(hello.supported_versions, 1)
        extensions.append((ExtensionType.SUPPORTED_VERSIONS, ext.getvalue()))
    for ext_type, values in (
        (ExtensionType.SUPPORTED_GROUPS, hello.supported_groups),
        (ExtensionType.SIGNATURE_ALGORITHMS, hello.signature_algorithms),
    ):
        if values is not None:
            ext = Writer()
            ext.push_uint16_list(values, 2)
            extensions.append((ext_type, ext.getvalue()))
    if hello.key_shares is not None:
        ext = Writer()
        with ext.push_block(2):
            for share in hello.key_shares:
                ext.push_uint16(share.group)
                ext.push_opaque(share.key_exchange, 2)
        extensions.append((ExtensionType.KEY_SHARE, ext.getvalue()))
    push_extensions(out, extensions + hello.other_extensions)
    return out.getvalue()


@dataclass(frozen=True)
class ServerHello:
    """A ServerHello, or a HelloRetryRequest when ``random == HRR_RANDOM``."""

    random: bytes
    legacy_session_id: bytes
    cipher_suite: int
    key_share: KeyShareEntry | None = None
    selected_group: int | None = None
    supported_version: int = TLS13

    @property
    def is_retry_request(self) -> bool:
        return self.random == HRR_RANDOM


def push_server_hello(hello: ServerHello) -> bytes:
    out = Writer()
    out.push_uint16(TLS12)
    out.push_bytes(hello.random)
    out.push_opaque(hello.legacy_session_id, 1)
    out.push_uint16(hello.cipher_suite)
    out.push_uint8(0)
    extensions: list[Extension] = [
        (ExtensionType.SUPPORTED_VERSIONS, hello.supported_version.to_bytes(2, "big"))
    ]
    if hello.key_share is not None:
        ext = Writer()
        ext.push_uint16(hello.key_share.group)
        ext.push_opaque(hello.key_share.key_exchange, 2)
        extensions.append((ExtensionType.KEY_SHARE, ext.getvalue()))
    elif hello.selected_group is not None:
        extensions.append((ExtensionType.KEY_SHARE, hello.selected_group.to_bytes(2, "big")))
    push_extensions(out, extensions)
    return out.getvalue()


def pull_server_hello(body: bytes) -> ServerHello:
    buf = Buffer(body)
    if buf.pull_uint16() != TLS12:
        raise IllegalParameter("ServerHello legacy_version is not 0x0303")
    random = buf.pull_bytes(32)
    session_id = pull_opaque(buf, 1)
    suite = buf.pull_uint16()
    if buf.pull_uint8() != 0:
        raise IllegalParameter("ServerHello compression is not null")
    extensions = dict(pull_extensions(buf))
    if not buf.eof():
        raise DecodeError("bytes after the ServerHello extensions")
    version = Buffer(extensions.get(ExtensionType.SUPPORTED_VERSIONS, b"")).pull_uint16()
    key_share, selected = None, None
    if ExtensionType.KEY_SHARE in extensions:
        ks = Buffer(extensions[ExtensionType.KEY_SHARE])
        if random == HRR_RANDOM:
            selected = ks.pull_uint16()
        else:
            key_share = KeyShareEntry(ks.pull_uint16(), pull_opaque(ks, 2, minimum=1))
        if not ks.eof():
            raise DecodeError("bytes after the key_share")
    return ServerHello(random, session_id, suite, key_share, selected, version)
