"""TLS#1 on the server side, over memory BIOs: every handshake's outcome is ours to see.

asyncio's own TLS (``start_server(ssl=...)``) drops a failed handshake silently:
the alert OpenSSL wrote stays in its buffer, nothing is logged, and the
connection is reset, so a client refused for a missing certificate or an old
protocol learns nothing and the operator sees nothing (issue 14). Here the
server drives ``ssl.SSLObject`` itself over the plain TCP stream: a refused
handshake sends its alert and is logged with the peer and the reason, and a
session that was resumed (no certificate shown this time) is refused.

Resumption is also turned off in the context (``no_resumption``): no TLS 1.3
tickets, no TLS 1.2 tickets, and no TLS 1.2 session-id cache, because a
resumed session carries the first handshake's certificate, which may have
expired or left the access tables since.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import ssl
import sys
from typing import Any

log = logging.getLogger(__name__)
READ_SIZE = 65536
_SSL_CTRL_SET_SESS_CACHE_MODE = 44  # OpenSSL's SSL_CTX_set_session_cache_mode(ctx, mode)
_SSL_SESS_CACHE_OFF = 0


class TlsRefusedError(Exception):
    """The handshake failed or was refused; ``reason`` is the line that was logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def no_resumption(ctx: ssl.SSLContext) -> bool:
    """Turn off every kind of session resumption in *ctx*; whether the cache is off too.

    ``ssl`` exposes tickets (``OP_NO_TICKET``, ``num_tickets``) but not OpenSSL's
    server session cache, which resumes TLS 1.2 session ids; that one is turned
    off through libssl itself, after checking that the pointer found really is
    this context (its options must read back). Where that cannot be done, the
    caller still refuses any session that was resumed (``TlsStream``).
    """
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        get_options = lib.SSL_CTX_get_options
        get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
        ctrl = lib.SSL_CTX_ctrl
        ctrl.restype = ctypes.c_long
        ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        # PySSLContext starts with PyObject_HEAD, then its SSL_CTX pointer.
        pointer = ctypes.c_void_p.from_address(id(ctx) + sys.getsizeof(object())).value
        if not pointer or get_options(pointer) != int(ctx.options):
            return False
        ctrl(pointer, _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF, None)
    except (OSError, AttributeError, ImportError, ValueError):
        return False
    return True


class TlsStream:
    """A server-side TLS connection on a plain asyncio stream (reader/writer)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext
    ) -> None:
        self._reader, self._writer = reader, writer
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.peer = writer.get_extra_info("peername")

    def __repr__(self) -> str:
        return f"TlsStream({self.peer!r})"

    async def handshake(self) -> None:
        """Complete the handshake, or send the alert, log and raise :class:`TlsRefusedError`."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._receive():
                    raise TlsRefusedError("the client closed during the TLS handshake") from None
            except ssl.SSLError as err:
                await self._flush_quietly()  # the alert that tells the client why
                reason = f"TLS handshake refused: {err.reason or err.__class__.__name__}"
                log.warning("refused a TLS client from %s: %s", self.peer, reason)
                raise TlsRefusedError(reason) from err
        await self._flush()
        if self.tls.session_reused:  # the context resumes nothing; never trust one that did
            reason = "a resumed TLS session (every session must show its certificate)"
            log.warning("refused a TLS client from %s: %s", self.peer, reason)
            raise TlsRefusedError(reason)

    def get_extra_info(self, name: str) -> Any:
        if name == "peercert":
            return self.tls.getpeercert()
        if name == "version":
            return self.tls.version()
        return self._writer.get_extra_info(name)

    async def read(self, size: int = READ_SIZE) -> bytes:
        """Up to *size* bytes of application data; b"" at the end of the connection."""
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._receive():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def write(self, data: bytes) -> None:
        self.tls.write(data)
        self._writer.write(self._outgoing.read())

    async def drain(self) -> None:
        await self._writer.drain()

    async def close(self) -> None:
        """close_notify if the session is up (best effort), then close the socket."""
        with contextlib.suppress(ssl.SSLError, ValueError):
            self.tls.unwrap()
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write(self._outgoing.read())
        self._writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(2):
                await self._writer.wait_closed()

    async def _receive(self) -> bool:
        data = await self._reader.read(READ_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._writer.write(pending)
            await self._writer.drain()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(OSError):
            await self._flush()
