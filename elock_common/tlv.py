"""The small BER-TLV subset every eLock data field uses.

One-byte tags (never 0x00, 0xFF or a "more tag bytes" form, so a Java Card
port reads a tag with one array access) and definite lengths in their shortest
form: 0..127 in one byte, then 81 xx, then 82 xxxx. Parsing is strict because
the input comes from the host: a non-minimal length, a length past the end or
leftover bytes raise ``TlvFormatError`` (the applet answers 6A80), and ``TlvReader`` refuses unknown
and repeated tags unless the caller allows them.
"""

from __future__ import annotations

from collections.abc import Iterable

from elock_common.errors import TlvFormatError

MAX_LENGTH = 0xFFFF


def encode(tag: int, value: bytes) -> bytes:
    if not _valid_tag(tag):
        raise ValueError(f"tag 0x{tag:02X} is not a one-byte tag")
    n = len(value)
    if n < 0x80:
        head = bytes((tag, n))
    elif n <= 0xFF:
        head = bytes((tag, 0x81, n))
    elif n <= MAX_LENGTH:
        head = bytes((tag, 0x82)) + n.to_bytes(2, "big")
    else:
        raise ValueError("TLV value too long")
    return head + value


def encode_all(items: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(encode(tag, value) for tag, value in items)


def decode(data: bytes) -> list[tuple[int, bytes]]:
    """Every (tag, value) of *data*, in order; raises ``TlvFormatError`` on bad encoding."""
    items: list[tuple[int, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        if not _valid_tag(tag):
            raise TlvFormatError("malformed tag")
        if pos + 1 >= end:
            raise TlvFormatError("TLV without a length")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            n = first
        elif first == 0x81:
            if pos + 1 > end or data[pos] < 0x80:
                raise TlvFormatError("bad 81 length")
            n, pos = data[pos], pos + 1
        elif first == 0x82:
            if pos + 2 > end:
                raise TlvFormatError("bad 82 length")
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if n <= 0xFF:
                raise TlvFormatError("non-minimal 82 length")
        else:
            raise TlvFormatError("unsupported length form")
        if pos + n > end:
            raise TlvFormatError("TLV value runs past the end")
        items.append((tag, bytes(data[pos : pos + n])))
        pos += n
    return items


class TlvReader:
    """Fields of one TLV list, checked against what the caller expects."""

    def __init__(self, data: bytes, allowed: Iterable[int], repeatable: Iterable[int] = ()) -> None:
        allowed_set, repeat_set = set(allowed), set(repeatable)
        self._single: dict[int, bytes] = {}
        self._multi: dict[int, list[bytes]] = {tag: [] for tag in repeat_set}
        for tag, value in decode(data):
            if tag in repeat_set:
                self._multi[tag].append(value)
            elif tag not in allowed_set:
                raise TlvFormatError(f"unexpected tag 0x{tag:02X}")
            elif tag in self._single:
                raise TlvFormatError(f"repeated tag 0x{tag:02X}")
            else:
                self._single[tag] = value

    def optional(self, tag: int) -> bytes | None:
        return self._single.get(tag)

    def required(self, tag: int) -> bytes:
        value = self._single.get(tag)
        if value is None:
            raise TlvFormatError(f"missing tag 0x{tag:02X}")
        return value

    def uint(self, tag: int, size: int, default: int | None = None) -> int:
        value = self._single.get(tag)
        if value is None:
            if default is None:
                raise TlvFormatError(f"missing tag 0x{tag:02X}")
            return default
        if len(value) != size:
            raise TlvFormatError(f"tag 0x{tag:02X} must be {size} bytes")
        return int.from_bytes(value, "big")

    def repeated(self, tag: int) -> list[bytes]:
        return list(self._multi.get(tag, []))


def _valid_tag(tag: int) -> bool:
    return 0 < tag < 0xFF and tag & 0x1F != 0x1F
