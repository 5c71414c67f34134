"""Reading and writing the TLS presentation language (RFC 8446 3).

``Buffer`` reads big-endian integers and opaque vectors and raises
``DecodeError`` (alert decode_error) on any underflow, so a parser never sees
an ``IndexError``. ``pull_block`` opens a length-prefixed vector as its own
buffer and fails when the parser left bytes unread in it: a field that claims
more than it holds, or holds more than it claims, is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from firmware.tls13.alerts import DecodeError, IllegalParameter

Extension = tuple[int, bytes]


class Buffer:
    """A read cursor over immutable bytes."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def eof(self) -> bool:
        return self._pos == len(self._data)

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def pull_bytes(self, length: int) -> bytes:
        if length < 0 or length > self.remaining:
            raise DecodeError(f"field of {length} bytes overruns its container")
        start = self._pos
        self._pos += length
        return self._data[start : self._pos]

    def pull_uint(self, size: int) -> int:
        return int.from_bytes(self.pull_bytes(size), "big")

    def pull_uint8(self) -> int:
        return self.pull_uint(1)

    def pull_uint16(self) -> int:
        return self.pull_uint(2)

    def pull_uint24(self) -> int:
        return self.pull_uint(3)

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining)


@contextmanager
def pull_block(buf: Buffer, size: int) -> Iterator[Buffer]:
    """Open a vector with a *size*-byte length prefix; its bytes must all be read."""
    inner = Buffer(buf.pull_bytes(buf.pull_uint(size)))
    yield inner
    if not inner.eof():
        raise DecodeError(f"{inner.remaining} unread bytes left in a length-prefixed field")


def pull_opaque(buf: Buffer, size: int, *, minimum: int = 0) -> bytes:
    """An opaque vector ``<minimum..2^(8*size)-1>``."""
    value = buf.pull_bytes(buf.pull_uint(size))
    if len(value) < minimum:
        raise DecodeError(f"vector shorter than its minimum of {minimum} bytes")
    return value


def pull_uint16_list(buf: Buffer, size: int) -> list[int]:
    """A vector of uint16 values (cipher suites, groups, versions, signature schemes)."""
    with pull_block(buf, size) as inner:
        if inner.remaining % 2:
            raise DecodeError("list of 16-bit values has an odd length")
        return [inner.pull_uint16() for _ in range(inner.remaining // 2)]


class Writer:
    """An append-only output buffer."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._data)

    def push_bytes(self, value: bytes) -> None:
        self._data += value

    def push_uint(self, value: int, size: int) -> None:
        self._data += value.to_bytes(size, "big")

    def push_uint8(self, value: int) -> None:
        self.push_uint(value, 1)

    def push_uint16(self, value: int) -> None:
        self.push_uint(value, 2)

    def push_uint24(self, value: int) -> None:
        self.push_uint(value, 3)

    @contextmanager
    def push_block(self, size: int) -> Iterator[None]:
        """Write what the body pushes, preceded by its *size*-byte length."""
        start = len(self._data)
        self._data += bytes(size)
        yield
        length = len(self._data) - start - size
        if length >= 1 << (8 * size):
            raise ValueError(f"block of {length} bytes does not fit a {size}-byte length")
        self._data[start : start + size] = length.to_bytes(size, "big")

    def push_opaque(self, value: bytes, size: int) -> None:
        with self.push_block(size):
            self.push_bytes(value)

    def push_uint16_list(self, values: list[int], size: int) -> None:
        with self.push_block(size):
            for value in values:
                self.push_uint16(value)


def handshake_message(msg_type: int, body: bytes) -> bytes:
    """A handshake message: type, 24-bit length, body."""
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def pull_extensions(buf: Buffer) -> list[Extension]:
    """An extension block; a type seen twice is illegal_parameter (RFC 8446 4.2)."""
    extensions: list[Extension] = []
    seen: set[int] = set()
    with pull_block(buf, 2) as inner:
        while not inner.eof():
            ext_type = inner.pull_uint16()
            if ext_type in seen:
                raise IllegalParameter(f"extension {ext_type} appears twice")
            seen.add(ext_type)
            extensions.append((ext_type, pull_opaque(inner, 2)))
    return extensions


def push_extensions(out: Writer, extensions: list[Extension]) -> None:
    with out.push_block(2):
        for ext_type, data in extensions:
            out.push_uint16(ext_type)
            out.push_opaque(data, 2)
