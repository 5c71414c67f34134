"""The provisioning protocol spoken inside TLS#2, between the key server and the card.

Standard library only (like ``elock_common.container``), so the key server can
encode commands and decode responses with it. Every message is one BER-TLV of
``elock_common.tlv`` (one-byte tag; length 1, 81 xx or 82 xxxx); the TLS
application data stream carries them back to back, split anyhow.

    command   tag   value
    INSTALL   A1    a KeyContainer, full form (``KeyContainer.to_tlv``), id 1..16
    REPLACE   A2    a KeyContainer, full form, id 1..16
    DELETE    A3    80 01 <container id>
    LIST      A4    (empty)

    response  tag = command tag + 0x10 (B1..B4); B0 answers an unknown tag
              value = C0 01 <status> [C1 <detail, ASCII>] [E1 <LIST entry>]*

LIST entries are ``KeyContainer.public_tlv`` (as the LIST APDU): never a PSK.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.container import MAX_CONTAINERS, KeyContainer, parse_list
from elock_common.errors import FormatError

MAX_COMMAND = 1024  # bytes of value; a full INSTALL is about 300
MAX_PSK = 32  # this channel's limit (key-format PSKs are 32 base64url characters)
MAX_DETAIL = 96
TAG_STATUS = 0xC0
TAG_DETAIL = 0xC1
UNREADABLE = 0xB0


class Command(enum.IntEnum):
    INSTALL = 0xA1
    REPLACE = 0xA2
    DELETE = 0xA3
    LIST = 0xA4

    @property
    def response_tag(self) -> int:
        return self + 0x10


class Status(enum.IntEnum):
    """The status byte of every provisioning response."""

    DONE = 0x00  # the store changed (for LIST: here is the list)
    UNCHANGED = 0x01  # already so: this very container is installed
    NOT_FOUND = 0x02  # no container with that id
    CONFLICT = 0x03  # INSTALL over a different container with the same id: use REPLACE
    MALFORMED = 0x10  # the message's TLVs do not parse, or a field is missing or repeated
    UNKNOWN_COMMAND = 0x11
    INVALID_FIELD = 0x12  # a container field breaks a rule (length, alphabet, range)
    TOO_LARGE = 0x13  # the message exceeds MAX_COMMAND; it was skipped unread
    STORE_FULL = 0x20
    STORE_ERROR = 0x21


class ProvisioningError(Exception):
    """A message is refused; ``status`` is what the card answers."""

    status: ClassVar[Status] = Status.MALFORMED


class MalformedMessageError(ProvisioningError):
    status = Status.MALFORMED


class InvalidFieldError(ProvisioningError):
    status = Status.INVALID_FIELD


class UnknownCommandError(ProvisioningError):
    status = Status.UNKNOWN_COMMAND


def response_tag(command_tag: int) -> int:
    try:
        return Command(command_tag).response_tag
    except ValueError:
        return UNREADABLE


@dataclass(frozen=True)
class Request:
    command: Command
    container_id: int = 0
    container: KeyContainer | None = None  # INSTALL and REPLACE


def encode_install(container: KeyContainer) -> bytes:
    return tlv.encode(Command.INSTALL, container.to_tlv())


def encode_replace(container: KeyContainer) -> bytes:
    return tlv.encode(Command.REPLACE, container.to_tlv())


def encode_delete(container_id: int) -> bytes:
    return tlv.encode(Command.DELETE, tlv.encode(c.TAG_ID, bytes([container_id])))


def encode_list() -> bytes:
    return tlv.encode(Command.LIST, b"")


def _container_id(value: int) -> int:
    if not 1 <= value <= MAX_CONTAINERS:
        raise InvalidFieldError(f"container id must be 1..{MAX_CONTAINERS}")
    return value


def decode_request(tag: int, value: bytes) -> Request:
    """Parse one command; raise a ``ProvisioningError`` that carries the status."""
    try:
        command = Command(tag)
    except ValueError:
        raise UnknownCommandError(f"unknown command tag 0x{tag:02X}") from None
    try:
        tlv.decode(value)  # the structure first: a broken TLV is MALFORMED
    except FormatError as exc:
        raise MalformedMessageError(str(exc)) from None
    if command is Command.LIST:
        if value:
            raise MalformedMessageError("LIST takes no fields")
        return Request(command)
    if command is Command.DELETE:
        try:
            container_id = tlv.TlvReader(value, (c.TAG_ID,)).uint(c.TAG_ID, 1)
        except FormatError as exc:
            raise MalformedMessageError(str(exc)) from None
        return Request(command, _container_id(container_id))
    try:
        container = KeyContainer.from_tlv(value)
    except FormatError as exc:
        raise InvalidFieldError(str(exc)) from None
    if len(container.psk) > MAX_PSK:
        raise InvalidFieldError(f"PSK longer than {MAX_PSK} bytes")
    return Request(command, _container_id(container.container_id), container)


@dataclass(frozen=True)
class Response:
    tag: int
    status: Status
    detail: str = ""
    entries: bytes = b""  # concatenated E1 LIST entries, public form

    def encode(self) -> bytes:
        value = tlv.encode(TAG_STATUS, bytes([self.status]))
        detail = self.detail.encode("ascii", "replace")[:MAX_DETAIL]
        if detail:
            value += tlv.encode(TAG_DETAIL, detail)
        return tlv.encode(self.tag, value + self.entries)

    def containers(self) -> list[KeyContainer]:
        """The key server's side of LIST: public containers (their PSK reads ``b"-"``)."""
        return parse_list(self.entries)


def decode_response(tag: int, value: bytes) -> Response:
    """The key server's side: parse one response (``WrongDataError`` when malformed)."""
    reader = tlv.TlvReader(value, (TAG_STATUS, TAG_DETAIL), repeatable=(c.TAG_LIST_ENTRY,))
    status = Status(reader.uint(TAG_STATUS, 1))
    detail = (reader.optional(TAG_DETAIL) or b"").decode("ascii", "replace")
    entries = b"".join(tlv.encode(c.TAG_LIST_ENTRY, e) for e in reader.repeated(c.TAG_LIST_ENTRY))
    return Response(tag, status, detail, entries)


class FramingError(ProvisioningError):
    """The stream itself is broken (bad tag or length form): it cannot be resynchronised."""

    status = Status.MALFORMED


class MessageSplitter:
    """Cuts a byte stream into BER-TLV messages, holding at most one message.

    A message longer than *max_value* is not buffered: its bytes are skipped as
    they arrive and it comes out as ``(tag, None)``, so the stream stays in step
    and the sender gets TOO_LARGE. A broken header raises ``FramingError``.
    """

    def __init__(self, max_value: int = MAX_COMMAND) -> None:
        self._max = max_value
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes | None]]:
        dropped = min(self._skip, len(data))
        self._skip -= dropped
        self._buffer += data[dropped:]
        out: list[tuple[int, bytes | None]] = []
        while (header := self._header()) is not None:
            tag, start, length = header
            if length > self._max:
                taken = min(start + length, len(self._buffer))
                del self._buffer[:taken]
                self._skip = start + length - taken
                out.append((tag, None))
                continue
            if len(self._buffer) < start + length:
                break
            out.append((tag, bytes(self._buffer[start : start + length])))
            del self._buffer[: start + length]
        return out

    def _header(self) -> tuple[int, int, int] | None:
        """(tag, header length, value length) of the buffered message, or None if incomplete."""
        buf = self._buffer
        if len(buf) < 2:
            return None
        tag, first = buf[0], buf[1]
        if not (0 < tag < 0xFF and tag & 0x1F != 0x1F):
            raise FramingError(f"malformed message tag 0x{tag:02X}")
        if first < 0x80:
            return tag, 2, first
        size = {0x81: 1, 0x82: 2}.get(first)
        if size is None:
            raise FramingError("unsupported length form")
        if len(buf) < 2 + size:
            return None
        length = int.from_bytes(buf[2 : 2 + size], "big")
        if length < (0x80 if size == 1 else 0x100):
            raise FramingError("non-minimal length")
        return tag, 2 + size, length
