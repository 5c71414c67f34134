"""The RACS server: asyncio, TLS 1.2/1.3 with mutual X.509, one task per session.

A thin adapter around the sans-I/O :class:`~racs.session.RacsSession`: it reads
bytes, hands out commands to :class:`~racs.service.RacsService` and writes what
the session produces. What it adds is the I/O policy: the client's certificate
CN is the user id (seed, "A PKI Infrastructure"), shown on every session (no
resumption, :mod:`racs.tls_stream`); a refused handshake gets its alert and a
log line; the handshake and then each line must be complete within
``idle_timeout`` seconds, so a slow or dead client cannot hold an SE; and on
every way out of a session (clean close, reset, garbage, timeout, shutdown)
the SEs it locked are powered off and unlocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from pathlib import Path
from typing import Any

from racs import metrics
from racs.errors import RacsError, SystemFailureError, UnauthorizedError
from racs.protocol import CRLF, format_error
from racs.service import RacsService, SessionContext
from racs.session import Closed, CommandRequest, Limits, NeedData, RacsSession
from racs.tls_stream import TlsRefusedError, TlsStream, no_resumption

log = logging.getLogger(__name__)
DEFAULT_PORT = 443  # the port of the open RACS server; racs.toml usually sets its own


def server_ssl_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS 1.2 or 1.3, server certificate, and a client certificate from *client_ca*."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=client_ca)
    if not no_resumption(ctx):  # every session shows its certificate
        log.info("TLS 1.2 session cache left on; resumed sessions are refused instead")
    return ctx


def common_name(peercert: Any) -> str | None:
    """The first CN of the subject of a certificate as ``SSLSocket.getpeercert()`` gives it."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value:
                return str(value)
    return None


class RacsServer:
    def __init__(
        self,
        service: RacsService,
        ssl_context: ssl.SSLContext,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        limits: Limits | None = None,
        idle_timeout: float = 60.0,
        max_sessions: int = 1024,
        max_user_sessions: int | None = None,
    ) -> None:
        self.service = service
        self.ssl_context = ssl_context
        self.host, self.port = host, port
        self.limits = limits or Limits()
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        # One user (one certificate, however few its rights) may not take every session:
        # by default a quarter of them, so the others, the key server among them, get theirs.
        self.max_user_sessions = max_user_sessions or max(1, max_sessions // 4)
        self._user_sessions: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions = 0  # connections with a user (handshake done, CN read)
        self._sids = itertools.count(1)

    @property
    def session_count(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("RACS server listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting, end every session (releasing its SEs), wait for them."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sid = next(self._sids)
        stream = TlsStream(reader, writer, self.ssl_context)
        try:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    await stream.handshake()
            except TimeoutError:
                log.warning("refused a TLS client from %s: no handshake within %g s",
                            stream.peer, self.idle_timeout)  # fmt: skip
                return
            await self._serve(sid, stream)
        except TlsRefusedError:
            pass  # logged with its reason, the alert sent
        except (ConnectionError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as err:
            log.info("sid %d: connection ended: %s", sid, err.__class__.__name__)
        except asyncio.CancelledError:
            log.info("sid %d: ended by server shutdown", sid)
        except Exception:
            log.exception("sid %d: unexpected failure", sid)
        finally:
            await self._release(sid)
            await stream.close()
            self._tasks.discard(task)

    async def _release(self, sid: int) -> None:
        release = asyncio.ensure_future(self.service.registry.release_all(sid))
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            await release  # cancelled twice: still finish unlocking before leaving

    async def _goodbye(self, writer: TlsStream, err: RacsError) -> None:
        """One error block, then the caller closes the connection."""
        log.warning("closing a session: %s", err.reason)
        writer.write(f"BEGIN{CRLF}{format_error(err, 0)}END{CRLF}".encode("ascii"))
        async with asyncio.timeout(self.idle_timeout):
            await writer.drain()

    async def _serve(self, sid: int, writer: TlsStream) -> None:
        user = common_name(writer.get_extra_info("peercert"))
        if user is None:
            metrics.refused_certificate()
            return await self._goodbye(writer, UnauthorizedError("certificate has no CN"))
        # Only sessions with a user count: a connection still in its handshake has shown
        # no certificate, and must not take the slot of a user who has one.
        if self._sessions >= self.max_sessions:
            return await self._goodbye(writer, SystemFailureError("too many sessions"))
        if self._user_sessions.get(user, 0) >= self.max_user_sessions:
            busy = SystemFailureError(f"too many sessions for user {user}")
            return await self._goodbye(writer, busy)
        self._sessions += 1
        self._user_sessions[user] = self._user_sessions.get(user, 0) + 1
        try:
            await self._serve_user(sid, user, writer)
        finally:
            self._sessions -= 1
            self._user_sessions[user] -= 1
            if not self._user_sessions[user]:
                del self._user_sessions[user]

    async def _serve_user(self, sid: int, user: str, writer: TlsStream) -> None:
        log.info("sid %d: %s connected from %s", sid, user, writer.get_extra_info("peername"))
        ctx = SessionContext(sid, user)
        session = RacsSession(self.limits, sid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.idle_timeout
        lines = session.lines_seen
        while True:
            event = session.next_event()
            if isinstance(event, CommandRequest):
                try:
                    done = self.service.execute(ctx, event.command)
                    session.succeed(await metrics.observed(done, event.command))
                except RacsError as err:
                    session.fail(err)
                except Exception:
                    log.exception("sid %d: %r failed", sid, event.command)
                    session.fail(SystemFailureError("internal error"))
                deadline = loop.time() + self.idle_timeout  # a slow card is not an idle client
                continue
            out = session.data_to_send()
            if out:
                writer.write(out)
                async with asyncio.timeout(self.idle_timeout):  # not wait_for: 3.11 can
                    await writer.drain()  # swallow a cancellation there (gh-86296)
            if isinstance(event, Closed):
                log.info("sid %d: closed: %s", sid, event.reason)
                return
            assert isinstance(event, NeedData)
            if session.lines_seen != lines:  # a whole line came in: the client is alive
                lines, deadline = session.lines_seen, loop.time() + self.idle_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    data = await writer.read()
            except TimeoutError:
                idle = SystemFailureError(f"no complete line for {self.idle_timeout:g} s")
                return await self._goodbye(writer, idle)
            if not data:
                log.info("sid %d: client closed the connection", sid)
                return
            session.receive_data(data)
