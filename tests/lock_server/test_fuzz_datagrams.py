"""Thousands of random and malformed datagrams at the real lock: no crash, no open."""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest

from elock_testkit.lockproc import LockProcess, coap

# Real peers (libcoap, pcscd, Chromium, systemd-analyze...): not in the fast run.
pytestmark = pytest.mark.peer

COUNT = 4000


def _client_hello(rng: random.Random) -> bytes:
    body = (
        b"\xfe\xfd"
        + rng.randbytes(32)
        + b"\x00"
        + b"\x00"  # version, random, session id, cookie
        + b"\x00\x02\xc0\xa8"
        + b"\x01\x00"  # TLS_PSK_WITH_AES_128_CCM_8, null compression
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00"
    handshake += len(body).to_bytes(3, "big") + body
    return (
        b"\x16\xfe\xfd"
        + b"\x00\x00"
        + rng.randbytes(6)
        + struct.pack(">H", len(handshake))
        + handshake
    )


def _record(rng: random.Random, kind: int, epoch: int, payload: bytes) -> bytes:
    return (
        bytes([kind])
        + b"\xfe\xfd"
        + struct.pack(">H", epoch)
        + rng.randbytes(6)
        + struct.pack(">H", len(payload))
        + payload
    )


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if choice < 0.5 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice < 0.75:
            del buf[rng.randrange(len(buf) + 1) :]
        else:
            buf[rng.randrange(len(buf) + 1) : 0] = rng.randbytes(rng.randint(1, 40))
    return bytes(buf)


def _inputs(rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    for i in range(COUNT):
        kind = i % 5
        if kind == 0:
            out.append(rng.randbytes(rng.randint(0, 1400)))
        elif kind == 1:
            out.append(_mutate(rng, _client_hello(rng)))
        elif kind == 2:
            out.append(_client_hello(rng))
        elif kind == 3:
            out.append(
                _record(
                    rng,
                    rng.choice([20, 21, 22, 23]),
                    rng.randint(0, 2),
                    rng.randbytes(rng.randint(0, 80)),
                )
            )
        else:
            # several records in one datagram, some with lying lengths
            out.append(b"".join(_mutate(rng, _client_hello(rng)) for _ in range(rng.randint(2, 4))))
    return out


def test_random_and_malformed_datagrams_never_crash_or_open(lock: LockProcess) -> None:
    rng = random.Random(20261129)
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    try:
        for n, datagram in enumerate(_inputs(rng)):
            sockets[n % len(sockets)].sendto(datagram, ("127.0.0.1", lock.port))
            if n % 50 == 49:
                time.sleep(0.02)  # stay under the socket buffer: every datagram is read
    finally:
        for s in sockets:
            s.close()
    assert lock.proc is not None and lock.proc.poll() is None, "the lock died"
    assert "on" not in lock.relay_events() and not lock.relay_on()
    # and it still serves a real key afterwards
    assert "opened" in coap("coap-client-openssl", "post", lock.mint(), lock.uri)
    assert lock.proc.poll() is None
