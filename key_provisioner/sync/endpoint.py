"""``/sync/lock``: the WebSocket each lock dials and keeps (the thin shell around
``ServerSyncSession``).

No tinydtls in this process: the lock connects to us over TCP (through the same
nginx as the admin API), so nothing here can take the API down. Bounded by
design: at most ``max_handshakes`` unauthenticated connections at once and
``max_connections`` in all (more are refused at once with HTTP 503, so a flood costs a
refusal each and never slows the connected locks), hello and proof within
``handshake_timeout_seconds``, each frame at most ``MAX_MESSAGE`` bytes, and a
lock silent for ``idle_timeout_seconds`` is gone. Database work runs in
threads; a revoke wakes the connection through ``LockNotifier``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.orm import Session
from starlette.responses import PlainTextResponse

from elock_common.lock_sync import MAX_MESSAGE
from key_provisioner.api.state import AppState
from key_provisioner.db.base import utcnow
from key_provisioner.observability import metrics
from key_provisioner.services import lock_sync
from key_provisioner.services.lock_sync import ListToSend, SyncRefusedError
from key_provisioner.sync.session import (
    AuditReceived,
    Authenticated,
    Closed,
    Event,
    HeldReported,
    HelloReceived,
    PingReceived,
    ServerSyncSession,
)

log = logging.getLogger(__name__)
router = APIRouter()
T = TypeVar("T")

POLICY_VIOLATION = 1008


@router.websocket("/sync/lock")
async def sync_lock(ws: WebSocket) -> None:
    state: AppState = ws.app.state.elock
    settings, gate = state.settings.sync, state.lock_sync_gate
    if gate.connections >= settings.max_connections or gate.handshakes >= settings.max_handshakes:
        # refused before the upgrade, the cheapest answer: a lock backs off and dials again
        busy = PlainTextResponse("key server busy; dial again later", 503, {"Retry-After": "5"})
        await ws.send_denial_response(busy)
        return
    gate.connections += 1
    gate.handshakes += 1
    await ws.accept()
    connection = _Connection(ws, state)
    try:
        await connection.run()
    except WebSocketDisconnect:
        pass
    finally:
        gate.connections -= 1
        if connection.handshaking:
            gate.handshakes -= 1
        await connection.release()


class _Connection:
    def __init__(self, ws: WebSocket, state: AppState) -> None:
        self.ws, self.state = ws, state
        self.session = ServerSyncSession()
        self.token = secrets.token_hex(16)
        self.lock_id: str | None = None  # once connected
        self.handshaking = True
        self.woken: asyncio.Event | None = None
        self.recorded = time.monotonic()  # when last_seen_at was last written
        self.offset: float | None = None  # the clock offset last written
        self.heard = time.monotonic()  # when the lock last sent a frame
        self.queued: tuple[int, float] | None = None  # the version last queued, and when

    async def run(self) -> None:
        settings = self.state.settings.sync
        deadline = time.monotonic() + settings.handshake_timeout_seconds
        receiving = asyncio.ensure_future(self._receive())
        try:
            while True:
                waits: set[asyncio.Future[object]] = {receiving}  # type: ignore[arg-type]
                woke = None
                if self.woken is not None:
                    woke = asyncio.ensure_future(self.woken.wait())
                    waits.add(woke)  # type: ignore[arg-type]
                silent_until = self.heard + settings.idle_timeout_seconds
                timeout = (deadline if self.handshaking else silent_until) - time.monotonic()
                done, _ = await asyncio.wait(
                    waits, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
                )
                if woke is not None and not woke.done():
                    woke.cancel()
                if not done:
                    why = "no hello and proof in time" if self.handshaking else "lock silent"
                    await self._end(Closed(why), refuse=self.handshaking)
                    return
                if woke is not None and woke in done:
                    assert self.woken is not None
                    self.woken.clear()
                    if not await self._send_current():
                        return
                if receiving in done:
                    self.heard = time.monotonic()
                    frame = receiving.result()
                    if frame is None or not await self._handle(frame):
                        return
                    receiving = asyncio.ensure_future(self._receive())
        finally:
            receiving.cancel()

    async def _receive(self) -> str | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            # the format is text frames; a binary one is refused like any bad frame
            text = data[: MAX_MESSAGE + 1].decode("utf-8", "replace")
        return str(text)

    async def _handle(self, frame: str) -> bool:
        """Handle one frame; False when the connection is over."""
        events = self.session.receive(frame, time.time())
        await self._flush()  # a pong leaves now, not after the database work below
        for event in events:
            if not await self._event(event):
                return False
        await self._flush()
        return True

    async def _event(self, event: Event) -> bool:
        try:
            if isinstance(event, HelloReceived):
                key = await self._db(
                    lambda s: lock_sync.sync_key(s, self.state.box, event.hello.lock_id)
                )
                self.session.challenge(key)
            elif isinstance(event, Authenticated):
                await self._authenticated(event)
            elif isinstance(event, HeldReported):
                send = await self._db(lambda s: lock_sync.held(
                    s, self._id, self.token, event.version, now=utcnow()))  # fmt: skip
                if send is None:  # the lock holds the server's list
                    metrics.lock_push(confirmed=True)
                    log.info("lock %s holds revocation version %d", self.lock_id, event.version,
                             extra={"lock_id": self.lock_id, "outcome": "confirmed"})  # fmt: skip
                self._queue_list(send)
            elif isinstance(event, AuditReceived):
                through = await self._db(lambda s: lock_sync.store_audit(
                    s, self._id, self.token, event.rows, now=utcnow()))  # fmt: skip
                self.session.ack_audit(through)
            elif isinstance(event, PingReceived) and self._worth_recording(event):
                await self._db(lambda s: lock_sync.seen(
                    s, self._id, self.token, event.clock_offset, now=utcnow()))  # fmt: skip
            elif isinstance(event, Closed):
                await self._end(event, refuse=not event.by_lock)
                return False
        except SyncRefusedError as exc:
            await self._end(Closed(exc.reason), refuse=True)
            return False
        return True

    def _worth_recording(self, ping: PingReceived) -> bool:
        """A ping is written when ``last_seen_at`` would otherwise age past half the idle
        timeout (other processes judge liveness by it), or the clock moved by 1 s: 10,000
        locks pinging every 20 s would otherwise be 500 writes a second."""
        now = time.monotonic()
        offset = ping.clock_offset
        moved = (offset is None) != (self.offset is None) or (
            offset is not None and self.offset is not None and abs(offset - self.offset) >= 1
        )
        if not moved and now - self.recorded < self.state.settings.sync.idle_timeout_seconds / 2:
            return False
        self.recorded, self.offset = now, offset
        return True

    async def _authenticated(self, event: Authenticated) -> None:
        idle = self.state.settings.sync.idle_timeout_seconds
        connected = await self._db(lambda s: lock_sync.connect(
            s, event.hello, self.token, now=utcnow(), idle_timeout=idle))  # fmt: skip
        self.lock_id = event.hello.lock_id
        self.handshaking = False
        self.state.lock_sync_gate.handshakes -= 1
        self.woken = self.state.notifier.subscribe(self.lock_id)
        self.session.welcome(time.time(), connected.audit_cursor, connected.version)
        self._queue_list(connected.send)
        log.info("lock %s connected (holds list %d, server's %d)", self.lock_id,
                 event.hello.revocation_version, connected.version)  # fmt: skip

    async def _send_current(self) -> bool:
        try:
            send = await self._db(
                lambda s: lock_sync.current(s, self._id, self.token, now=utcnow())
            )
        except SyncRefusedError as exc:
            await self._end(Closed(exc.reason), refuse=True)
            return False
        self._queue_list(send)
        await self._flush()
        return True

    def _queue_list(self, send: ListToSend | None) -> None:
        if send is None:
            return
        now = time.monotonic()
        if self.queued is not None and self.queued[0] == send.version and now - self.queued[1] < 5:
            return  # sent a moment ago: its confirmation is on its way
        self.queued = (send.version, now)
        self.session.send_revocations(send.version, send.revoked)

    async def _end(self, closed: Closed, *, refuse: bool) -> None:
        log.info("lock sync connection %s ended: %s", self.lock_id or "(unauthenticated)",
                 closed.reason)  # fmt: skip
        if refuse:
            self.session.refuse(closed.reason)
        with contextlib.suppress(Exception):
            await self._flush()
            await self.ws.close(POLICY_VIOLATION if refuse else 1000, closed.reason[:120])

    async def _flush(self) -> None:
        for frame in self.session.data_to_send():
            await self.ws.send_text(frame)

    async def release(self) -> None:
        if self.lock_id is None:
            return
        if self.woken is not None:
            self.state.notifier.unsubscribe(self.lock_id, self.woken)
        lock_id, token = self.lock_id, self.token
        with contextlib.suppress(Exception):
            await self._db(lambda s: lock_sync.disconnected(s, lock_id, token, now=utcnow()))

    @property
    def _id(self) -> str:
        assert self.lock_id is not None
        return self.lock_id

    async def _db(self, action: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.state.sessions() as session:
                return action(session)

        return await asyncio.to_thread(run)
