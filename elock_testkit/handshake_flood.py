"""Unauthenticated DTLS handshakes, as fast as asked, each from a fresh UDP port.

Each handshake is what anyone on the network can do without a key: ClientHello,
the cookie round (HelloVerifyRequest, ClientHello with the cookie), the server's
flight up to ServerHelloDone, then a ClientKeyExchange whose PSK identity is
junk, with a ChangeCipherSpec. That reaches the lock's PSK lookup and its refusal path ("malformed
identity"). Bounded by rate, count and time; sends only to the address given,
which the callers keep on loopback.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

PSK_AES_128_CCM_8 = 0xC0A8
_HANDSHAKE, _CLIENT_HELLO, _HELLO_VERIFY, _SERVER_HELLO_DONE, _CLIENT_KEY_EXCHANGE = (
    22, 1, 3, 14, 16,
)  # fmt: skip


def _record(seq: int, body: bytes) -> bytes:
    return struct.pack("!BHH6sH", _HANDSHAKE, 0xFEFD, 0, seq.to_bytes(6, "big"), len(body)) + body


def _handshake(kind: int, message_seq: int, body: bytes) -> bytes:
    length = len(body).to_bytes(3, "big")
    return bytes([kind]) + length + struct.pack("!H", message_seq) + b"\0\0\0" + length + body


def client_hello(random: bytes, cookie: bytes, message_seq: int) -> bytes:
    body = (
        b"\xfe\xfd" + random + b"\x00" + bytes([len(cookie)]) + cookie
        + struct.pack("!HHH", 4, PSK_AES_128_CCM_8, 0x00FF) + b"\x01\x00"
        + struct.pack("!HHH", 4, 0x0017, 0)  # extended_master_secret: tinydtls insists
    )  # fmt: skip
    return _record(message_seq, _handshake(_CLIENT_HELLO, message_seq, body))


def client_key_exchange(identity: bytes) -> bytes:
    """ClientKeyExchange and ChangeCipherSpec in one datagram: tinydtls looks the
    identity up when the ChangeCipherSpec arrives."""
    body = struct.pack("!H", len(identity)) + identity
    change_cipher_spec = struct.pack("!BHH6sH", 20, 0xFEFD, 0, (3).to_bytes(6, "big"), 1) + b"\1"
    return _record(2, _handshake(_CLIENT_KEY_EXCHANGE, 2, body)) + change_cipher_spec


def _messages(datagram: bytes) -> list[tuple[int, bytes]]:
    """(handshake type, body) of each epoch-0 handshake record in a datagram."""
    found, offset = [], 0
    while offset + 13 <= len(datagram):
        end = offset + 13 + int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        record = datagram[offset + 13 : end]
        if datagram[offset] == _HANDSHAKE and len(record) >= 12:
            found.append((record[0], record[12:]))
        offset = end
    return found


@dataclass
class _Attempt:
    sock: socket.socket
    began: float
    random: bytes = field(default_factory=lambda: os.urandom(32))
    state: str = "hello"


@dataclass
class FloodResult:
    started: int = 0
    refused_identity_sent: int = 0  # reached the lock's PSK lookup
    timed_out: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.refused_identity_sent / self.elapsed if self.elapsed else 0.0


def flood(
    target: tuple[str, int],
    *,
    rate: float,
    seconds: float,
    max_inflight: int = 256,
    attempt_timeout: float = 2.0,
) -> FloodResult:
    """Run handshakes at ``rate`` per second for ``seconds`` (both bounded by the caller)."""
    if target[0] not in ("127.0.0.1", "::1") and not target[0].startswith("127."):
        raise ValueError("the flood only targets loopback")
    result, attempts = FloodResult(), dict[int, _Attempt]()
    sel = selectors.DefaultSelector()
    began = time.monotonic()
    end = began + seconds
    total = int(rate * seconds)
    try:
        while (now := time.monotonic()) < end or attempts:
            due = min(total, int((now - began) * rate)) if now < end else result.started
            while result.started < due and len(attempts) < max_inflight:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                attempt = _Attempt(sock, now)
                sock.sendto(client_hello(attempt.random, b"", 0), target)
                sel.register(sock, selectors.EVENT_READ, attempt)
                attempts[sock.fileno()] = attempt
                result.started += 1
            for key, _ in sel.select(0.002):
                attempt = key.data
                try:
                    data = attempt.sock.recv(4096)
                except OSError:
                    continue
                if _advance(attempt, data, target):
                    result.refused_identity_sent += 1
                    _drop(sel, attempts, attempt)
            for attempt in [a for a in attempts.values() if now - a.began > attempt_timeout]:
                result.timed_out += 1
                _drop(sel, attempts, attempt)
            if now >= end + attempt_timeout:
                break
    finally:
        for attempt in list(attempts.values()):
            _drop(sel, attempts, attempt)
        sel.close()
    result.elapsed = time.monotonic() - began
    return result


def _advance(attempt: _Attempt, data: bytes, target: tuple[str, int]) -> bool:
    """Answer one datagram from the lock; True once the junk identity is sent."""
    for kind, body in _messages(data):
        if kind == _HELLO_VERIFY and attempt.state == "hello" and len(body) >= 3:
            cookie = body[3 : 3 + body[2]]
            attempt.sock.sendto(client_hello(attempt.random, cookie, 1), target)
            attempt.state = "cookie"
        elif kind == _SERVER_HELLO_DONE and attempt.state == "cookie":
            junk = b"junk-" + os.urandom(8).hex().encode()
            attempt.sock.sendto(client_key_exchange(junk), target)
            return True
    return False


def _drop(sel: selectors.BaseSelector, attempts: dict[int, _Attempt], attempt: _Attempt) -> None:
    attempts.pop(attempt.sock.fileno(), None)
    sel.unregister(attempt.sock)
    attempt.sock.close()
