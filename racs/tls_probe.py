"""Which TLS version does a server that refused TLS 1.2 and 1.3 speak? For the error only.

When TLS#1 fails because the server will not speak TLS 1.2 or 1.3 (its alert
says "protocol version", or it answers in an older version), the person who
reads the error should learn which version the server offers: the draft
author's published RACS binaries speak only TLS 1.0. OpenSSL does not say, so
the client asks once more with a bare ClientHello that offers TLS 1.0 and 1.1
and reads the version of the first record that comes back, then hangs up. No
key is exchanged and nothing is sent after the hello: it is a question, not a
session (docs/racs.md, "Why not TLS 1.0").

The hello and the answer are plain bytes (sans-I/O); :func:`probe` is the thin
asyncio shell around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2"}
# RSA and ECDHE suites with AES-CBC and 3DES: what servers of the TLS 1.0 era accept.
_SUITES = (0xC014, 0xC013, 0xC00A, 0xC009, 0x0035, 0x002F, 0x0039, 0x0033, 0x000A)
_HANDSHAKE, _ALERT, _SERVER_HELLO = 0x16, 0x15, 0x02


def legacy_client_hello(rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """A TLS 1.1 ClientHello (so a server picks TLS 1.0 or 1.1), in a TLS 1.0 record."""
    suites = b"".join(s.to_bytes(2, "big") for s in _SUITES)
    curves = b"\x00\x0a\x00\x06\x00\x04\x00\x17\x00\x18"  # supported_groups: P-256, P-384
    points = b"\x00\x0b\x00\x02\x01\x00"  # ec_point_formats: uncompressed
    extensions = curves + points
    body = (
        b"\x03\x02" + rng(32) + b"\x00"  # client_version TLS 1.1, random, no session id
        + len(suites).to_bytes(2, "big") + suites + b"\x01\x00"  # suites, null compression
        + len(extensions).to_bytes(2, "big") + extensions
    )  # fmt: skip
    handshake = bytes([0x01]) + len(body).to_bytes(3, "big") + body
    return bytes([_HANDSHAKE, 0x03, 0x01]) + len(handshake).to_bytes(2, "big") + handshake


def answered_version(data: bytes) -> str | None:
    """The version of the server's first record (its ServerHello's, if it is one)."""
    if len(data) < 5 or data[0] not in (_HANDSHAKE, _ALERT):
        return None
    version = int.from_bytes(data[1:3], "big")
    if data[0] == _HANDSHAKE and len(data) >= 11 and data[5] == _SERVER_HELLO:
        version = int.from_bytes(data[9:11], "big")
    return VERSIONS.get(version)


async def probe(host: str, port: int, timeout: float = 5.0) -> str | None:
    """The TLS version *host*:*port* answers a TLS 1.0/1.1 hello with; None if unclear."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(legacy_client_hello())
            await writer.drain()
            data = b""
            while len(data) < 11 and (chunk := await reader.read(11 - len(data))):
                data += chunk
            return answered_version(data)
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()
