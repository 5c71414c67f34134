"""The DTLS handshake header, and messages rebuilt from fragments (RFC 6347 4.2.2, 4.2.3).

DTLS adds message_seq, fragment_offset and fragment_length to every handshake
header, so a message may arrive in pieces, out of order, twice, or ahead of the one
we expect. ``HandshakeInbox`` turns that back into whole messages in message_seq
order; what to do with an old message_seq (a repeated flight, a restarted server) is
the state machine's business, not this module's.

Bounded: a message may be at most ``MAX_HANDSHAKE_MESSAGE`` bytes and at most
``MAX_BUFFERED_MESSAGES`` message_seqs are held, counting the next expected one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from firmware.dtls.errors import DecodeError, HandshakeFailureError, IllegalParameterError
from firmware.dtls.messages import Reader

HANDSHAKE_HEADER_SIZE = 12
MAX_HANDSHAKE_MESSAGE = 2048  # a PSK server's messages are far smaller
MAX_BUFFERED_MESSAGES = 4  # handshake messages held ahead of the next expected one


def push_handshake(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """A whole handshake message in DTLS form (offset 0, fragment = whole body).

    The handshake hash takes messages in this form too, however they arrived.
    """
    n = len(body).to_bytes(3, "big")
    return struct.pack("!B3sH3s3s", msg_type, n, message_seq, b"\0\0\0", n) + body


@dataclass(frozen=True, slots=True)
class HandshakeFragment:
    msg_type: int
    length: int  # of the whole message
    message_seq: int
    offset: int
    data: bytes

    @property
    def is_whole(self) -> bool:
        return len(self.data) == self.length


def pull_fragments(payload: bytes) -> Iterator[HandshakeFragment]:
    """The fragments of one handshake record, checked one at a time.

    A generator on purpose: the caller acts on each fragment before the next is
    read, so a malformed fragment fails the connection only after the ones before it
    have been taken in.
    """
    reader = Reader(payload)
    while not reader.eof():
        msg_type = reader.uint(1)
        length = reader.uint(3)
        message_seq = reader.uint(2)
        offset = reader.uint(3)
        data = reader.vector(3)
        if offset + len(data) > length:
            raise DecodeError("handshake fragment beyond its message")
        if length > MAX_HANDSHAKE_MESSAGE:
            raise HandshakeFailureError(f"handshake message of {length} bytes is too large")
        yield HandshakeFragment(msg_type, length, message_seq, offset, data)


def contains_message_type(payload: bytes, msg_type: int) -> bool:
    """Whether a handshake record holds a message of ``msg_type``, read loosely.

    For records of an epoch we have left: they are only a hint that the peer
    repeated a flight, so a malformed one is skipped rather than refused.
    """
    pos = 0
    while len(payload) - pos >= HANDSHAKE_HEADER_SIZE:
        if payload[pos] == msg_type:
            return True
        pos += HANDSHAKE_HEADER_SIZE + int.from_bytes(payload[pos + 9 : pos + 12], "big")
    return False


class _Reassembly:
    """One handshake message being rebuilt; overlapping fragments are counted once."""

    __slots__ = ("body", "length", "missing", "msg_type", "seen")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.body = bytearray(length)
        self.seen = bytearray(length)
        self.missing = length

    def add(self, offset: int, fragment: bytes) -> None:
        end = offset + len(fragment)
        self.body[offset:end] = fragment
        self.missing -= len(fragment) - sum(self.seen[offset:end])
        self.seen[offset:end] = b"\x01" * len(fragment)


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    msg_type: int
    message_seq: int
    body: bytes


class HandshakeInbox:
    """Fragments in, whole messages out, in message_seq order from ``next_seq``."""

    __slots__ = ("_pending", "next_seq")

    def __init__(self) -> None:
        self.next_seq = 0
        self._pending: dict[int, _Reassembly] = {}

    def add(self, fragment: HandshakeFragment) -> None:
        """Take a fragment of ``next_seq`` or a little after it; others are dropped."""
        seq = fragment.message_seq
        if not self.next_seq <= seq < self.next_seq + MAX_BUFFERED_MESSAGES:
            return
        buffer = self._pending.get(seq)
        if buffer is None:
            buffer = self._pending[seq] = _Reassembly(fragment.msg_type, fragment.length)
        elif (buffer.msg_type, buffer.length) != (fragment.msg_type, fragment.length):
            raise IllegalParameterError("fragments of one message disagree on type or length")
        buffer.add(fragment.offset, fragment.data)

    def pop(self) -> HandshakeMessage | None:
        """The next message if all of it is here; ``next_seq`` moves past it."""
        ready = self._pending.get(self.next_seq)
        if ready is None or ready.missing:
            return None
        message_seq = self.next_seq
        del self._pending[message_seq]
        self.next_seq += 1
        return HandshakeMessage(ready.msg_type, message_seq, bytes(ready.body))

    def clear(self) -> None:
        self._pending.clear()

    def restart_at(self, message_seq: int) -> None:
        """Forget everything and expect ``message_seq`` next (the server started over)."""
        self._pending.clear()
        self.next_seq = message_seq
