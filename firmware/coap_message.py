"""Minimal CoAP message codec (RFC 7252 3) for the applet's Open request.

Only what the card needs: encode a request, decode whatever comes back, strictly.
Decoding follows RFC 7252 3 and 4.1 to the letter: a version other than 1, a
token longer than 8 bytes, a reserved option nibble (15 outside the payload
marker), an option number past 65535, a payload marker with no payload, or an
Empty message carrying anything after its Message ID is a message format error,
raised as ``CoapFormatError``. The caller (``coap_open``) drops such messages.

``split_coaps_uri`` turns ``coaps://host:port/path?query`` into the Uri-Host,
Uri-Path and Uri-Query option values of RFC 7252 6.4.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from urllib.parse import unquote, urlsplit

COAP_VERSION = 1
COAPS_DEFAULT_PORT = 5684
MAX_TOKEN = 8
MAX_OPTION_NUMBER = 0xFFFF
MAX_OPTION_VALUE = 1034  # the largest option RFC 7252 defines (Proxy-Uri)
PAYLOAD_MARKER = 0xFF

OPTION_URI_HOST = 3
OPTION_URI_PORT = 7
OPTION_URI_PATH = 11
OPTION_CONTENT_FORMAT = 12
OPTION_URI_QUERY = 15


class CoapFormatError(ValueError):
    """A CoAP message, option or URI that RFC 7252 calls malformed."""


class MessageType(IntEnum):
    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class Method(IntEnum):
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4


def code_string(code: int) -> str:
    """0x44 -> '2.04' (class.detail, RFC 7252 3)."""
    return f"{code >> 5}.{code & 0x1F:02d}"


@dataclass(frozen=True, slots=True)
class CoapMessage:
    type: MessageType
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = field(default=b"", repr=False)

    @property
    def code_string(self) -> str:
        return code_string(self.code)

    @property
    def is_empty(self) -> bool:
        return self.code == 0

    @property
    def is_response(self) -> bool:
        return 2 <= self.code >> 5 <= 5

    def option_values(self, number: int) -> list[bytes]:
        return [value for num, value in self.options if num == number]


def encode_uint(value: int) -> bytes:
    """Option uint: big-endian with no leading zero bytes (RFC 7252 3.2); 0 is empty."""
    if value < 0:
        raise CoapFormatError("negative uint option")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, struct.pack("!H", value - 269)


def encode_message(message: CoapMessage) -> bytes:
    if len(message.token) > MAX_TOKEN:
        raise CoapFormatError("token longer than 8 bytes")
    if not 0 <= message.message_id <= 0xFFFF or not 0 <= message.code <= 0xFF:
        raise CoapFormatError("message id or code out of range")
    if message.code == 0 and (message.token or message.options or message.payload):
        raise CoapFormatError("an Empty message carries nothing after its Message ID")
    out = bytearray(
        struct.pack(
            "!BBH",
            COAP_VERSION << 6 | message.type << 4 | len(message.token),
            message.code,
            message.message_id,
        )
    )
    out += message.token
    previous = 0
    for number, value in sorted(message.options, key=lambda option: option[0]):
        if not 0 <= number <= MAX_OPTION_NUMBER or len(value) > MAX_OPTION_VALUE:
            raise CoapFormatError(f"option {number} out of range")
        delta, delta_ext = _nibble(number - previous)
        length, length_ext = _nibble(len(value))
        out.append(delta << 4 | length)
        out += delta_ext + length_ext + value
        previous = number
    if message.payload:
        out.append(PAYLOAD_MARKER)
        out += message.payload
    return bytes(out)


def _extended(nibble: int, data: bytes, pos: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos + 1 > len(data):
            raise CoapFormatError("truncated option extension")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise CoapFormatError("truncated option extension")
        return int.from_bytes(data[pos : pos + 2], "big") + 269, pos + 2
    raise CoapFormatError("reserved option nibble 15")


def decode_message(data: bytes) -> CoapMessage:
    if len(data) < 4:
        raise CoapFormatError("shorter than the 4-byte header")
    first, code, message_id = struct.unpack_from("!BBH", data)
    if first >> 6 != COAP_VERSION:
        raise CoapFormatError(f"unknown version {first >> 6}")
    tkl = first & 0x0F
    if tkl > MAX_TOKEN:
        raise CoapFormatError("token length 9-15 is reserved")
    if code == 0 and (tkl or len(data) != 4):
        raise CoapFormatError("an Empty message carries nothing after its Message ID")
    if 4 + tkl > len(data):
        raise CoapFormatError("truncated token")
    token = data[4 : 4 + tkl]
    pos = 4 + tkl
    options: list[tuple[int, bytes]] = []
    number = 0
    payload = b""
    while pos < len(data):
        byte = data[pos]
        pos += 1
        if byte == PAYLOAD_MARKER:
            payload = data[pos:]
            if not payload:
                raise CoapFormatError("payload marker followed by no payload")
            break
        delta, pos = _extended(byte >> 4, data, pos)
        length, pos = _extended(byte & 0x0F, data, pos)
        number += delta
        if number > MAX_OPTION_NUMBER:
            raise CoapFormatError("option number past 65535")
        if pos + length > len(data):
            raise CoapFormatError("truncated option value")
        options.append((number, data[pos : pos + length]))
        pos += length
    return CoapMessage(
        MessageType(first >> 4 & 0x03), code, message_id, token, tuple(options), payload
    )


@dataclass(frozen=True, slots=True)
class CoapsUri:
    host: str
    port: int
    path: tuple[str, ...]
    query: tuple[str, ...] = ()

    @property
    def host_is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def request_options(self) -> list[tuple[int, bytes]]:
        """Uri-Host (unless an IP literal), Uri-Path and Uri-Query, per RFC 7252 6.4.

        Uri-Port is never needed: the datagrams go to that very port.
        """
        options: list[tuple[int, bytes]] = []
        if not self.host_is_ip_literal:
            options.append((OPTION_URI_HOST, self.host.encode()))
        options += [(OPTION_URI_PATH, segment.encode()) for segment in self.path]
        options += [(OPTION_URI_QUERY, item.encode()) for item in self.query]
        return options


def _decoded(part: str, what: str) -> str:
    try:
        value = unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise CoapFormatError(f"{what} is not UTF-8 once percent-decoded") from None
    if len(value.encode()) > 255:
        raise CoapFormatError(f"{what} longer than 255 bytes")
    return value


def split_coaps_uri(uri: str) -> CoapsUri:
    """Split ``coaps://host[:port][/path][?query]`` (RFC 7252 6.2 and 6.4)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise CoapFormatError(f"bad URI: {exc}") from None
    if parts.scheme.lower() != "coaps":
        raise CoapFormatError("only coaps:// URIs are supported")
    if parts.fragment or "#" in uri:
        raise CoapFormatError("a CoAP URI has no fragment")
    if parts.username is not None or not parts.hostname:
        raise CoapFormatError("a CoAP URI needs a host and no user information")
    host = _decoded(parts.hostname, "host").lower()
    path: tuple[str, ...] = ()
    if parts.path not in ("", "/"):
        if not parts.path.startswith("/"):
            raise CoapFormatError("path must be absolute")
        path = tuple(_decoded(segment, "path segment") for segment in parts.path[1:].split("/"))
    query = tuple(_decoded(item, "query") for item in parts.query.split("&")) if parts.query else ()
    return CoapsUri(host, port if port is not None else COAPS_DEFAULT_PORT, path, query)


def encode_request(
    method: Method,
    message_id: int,
    token: bytes,
    uri_path: Sequence[str],
    *,
    uri_host: str | None = None,
    uri_query: Sequence[str] = (),
    content_format: int | None = None,
    payload: bytes = b"",
    confirmable: bool = True,
) -> bytes:
    """A CoAP request (CON by default) with the options of a split URI."""
    options: list[tuple[int, bytes]] = []
    if uri_host is not None:
        options.append((OPTION_URI_HOST, uri_host.encode()))
    options += [(OPTION_URI_PATH, segment.encode()) for segment in uri_path]
    if content_format is not None:
        options.append((OPTION_CONTENT_FORMAT, encode_uint(content_format)))
    options += [(OPTION_URI_QUERY, item.encode()) for item in uri_query]
    message_type = MessageType.CON if confirmable else MessageType.NON
    return encode_message(
        CoapMessage(message_type, int(method), message_id, token, tuple(options), payload)
    )
