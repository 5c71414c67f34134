"""Light locks for tests and the bench: the lock's sync session over a WebSocket, no door.

One ``LightLock`` is the lock's real ``LockSyncSession`` and the ``websockets``
client the lock uses, without its store, relay or CoAP server, so thousands fit
in one process. It holds whatever list it is sent and confirms it, as a lock does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext

from websockets.asyncio.client import ClientConnection, connect

from elock_common import LockSecret
from elock_common.lock_sync import MAX_MESSAGE
from lock_server.sync_session import (
    Closed,
    Event,
    LockSyncSession,
    RevocationsReceived,
    Synced,
)


@dataclass
class LightLock:
    lock_id: str
    secret: LockSecret
    held: int = 0
    audit_log: int = 1
    ping_seconds: float = 20.0
    session: LockSyncSession | None = None
    ws: ClientConnection | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the connection is over
    closed: str | None = None
    # version -> time.monotonic() when it arrived
    arrivals: dict[int, float] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    on_list: Callable[[int, float], None] | None = None  # (version, monotonic arrival time)

    async def connect(
        self, url: str, *, timeout: float = 10.0, ssl: SSLContext | None = None
    ) -> None:
        """Dial, authenticate, and keep reading in the background."""
        self.synced.clear()
        self.ended.clear()
        self.closed = None
        self.session = LockSyncSession(
            self.lock_id, self.secret.derive_sync_key(), revocation_version=self.held,
            audit_log=self.audit_log, ping_seconds=self.ping_seconds,
            pong_timeout=max(2.0, self.ping_seconds),
        )  # fmt: skip
        self.ws = await connect(
            url,
            max_size=MAX_MESSAGE,
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=1,
            ssl=ssl,
        )
        self.session.start(time.time())
        await self._flush()
        self._reader = asyncio.create_task(self._read())

    async def in_sync(self, version: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.held < version:
            if self.closed is not None:
                raise AssertionError(f"lock {self.lock_id} closed: {self.closed}")
            if time.monotonic() > deadline:
                raise AssertionError(f"lock {self.lock_id} holds {self.held}, not {version}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Drop the connection first, then the reader: Python 3.11's ``wait_for`` can
        swallow a cancel that races an answer, so a cancel alone may not end it."""
        if self.ws is not None:
            self.ws.transport.abort()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=5)
        self.ws = None

    async def _read(self) -> None:
        assert self.ws is not None and self.session is not None
        try:
            while True:
                timer = self.session.get_timer()
                timeout = None if timer is None else max(0.0, timer - time.time())
                try:
                    frame = await asyncio.wait_for(self.ws.recv(), timeout)
                except TimeoutError:
                    events = self.session.handle_timer(time.time())
                else:
                    events = self.session.receive(frame, time.time())
                for event in events:
                    self._apply(event)
                await self._flush()
                if self.closed is not None:
                    return
        except Exception as exc:  # the connection ended: say so, as the lock would
            self.closed = self.closed or f"{type(exc).__name__}: {exc}"
        finally:
            self.ended.set()

    def _apply(self, event: Event) -> None:
        assert self.session is not None
        if isinstance(event, Synced):
            self.synced.set()
        elif isinstance(event, RevocationsReceived):
            arrived = self.arrivals.setdefault(event.version, time.monotonic())
            if self.on_list is not None:
                self.on_list(event.version, arrived)
            self.held = max(self.held, event.version)
            self.session.confirm(self.held)
        elif isinstance(event, Closed):
            self.closed = event.reason

    async def _flush(self) -> None:
        assert self.ws is not None and self.session is not None
        for frame in self.session.data_to_send():
            await self.ws.send(frame)
