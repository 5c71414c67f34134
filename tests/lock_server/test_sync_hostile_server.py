"""A real lock process against a hostile key-server address (DNS spoof, hostile proxy).

The attacker does not hold K_lock, so it can never be believed; what it must not
be able to do either is stall the lock's sync for good or end it: after any
misbehaviour the lock gives up on that connection within a bounded time, says
why in ``elock-lock status``, and dials again (so the real key server, once
reachable, is heard).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from elock_testkit.lockproc import LockProcess
from elock_testkit.waiting import wait_for

pytestmark = pytest.mark.peer

Handler = Callable[[ServerConnection], Awaitable[None]]


class HostileServer:
    """A WebSocket server on loopback, in a thread of its own, counting connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._count, "127.0.0.1", 0, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close(close_connections=True)

    async def _count(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            await self._handler(ws)
        except ConnectionClosed:
            pass

    @contextmanager
    def running(self) -> Iterator[HostileServer]:
        self._thread.start()
        assert self._ready.wait(10), "the hostile server did not start"
        try:
            yield self
        finally:
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._loop.close()


def _lock(tmp_path: Path, port: int) -> LockProcess:
    lock = LockProcess.create(tmp_path / "lock")
    with open(lock.config, "a") as config:
        config.write(
            f'\n[sync]\nurl = "ws://127.0.0.1:{port}/sync/lock"\nlock_id = "{uuid.uuid4()}"\n'
            "start_wait_seconds = 1.0\nping_seconds = 1.0\nreconnect_max_seconds = 1.0\n"
        )
    return lock


async def _silent(ws: ServerConnection) -> None:
    """Accept the upgrade and the hello, then say nothing, ever (or a dropped link)."""
    await ws.recv()
    await ws.wait_closed()


async def _huge_number(ws: ServerConnection) -> None:
    """Answer the hello with a number Python's int() refuses (over 4300 digits)."""
    await ws.recv()
    await ws.send('{"type":"challenge","nonce":' + "1" * 5000 + ',"proof":"x"}')
    await ws.wait_closed()


def _redials(tmp_path: Path, handler: Handler) -> dict:  # type: ignore[type-arg]
    """Start a lock against ``handler``; it must serve, then dial a second time."""
    with HostileServer(handler).running() as hostile:
        lock = _lock(tmp_path, hostile.port)
        lock.start()  # returns once "listening on": the start wait is bounded
        try:
            wait_for(lambda: hostile.connections >= 2, 15, "the lock dialling again")
            sync: dict = lock.status()["sync"]  # type: ignore[type-arg]
            assert lock.proc is not None and lock.proc.poll() is None
        finally:
            lock.stop()
    return sync


def test_a_server_that_never_answers_the_hello_is_left_and_dialled_again(
    tmp_path: Path,
) -> None:
    sync = _redials(tmp_path, _silent)
    assert sync["connected"] is False
    assert "no challenge" in (sync["last_error"] or ""), sync


def test_a_frame_with_a_huge_number_ends_the_connection_not_the_sync(tmp_path: Path) -> None:
    sync = _redials(tmp_path, _huge_number)
    assert sync["connected"] is False
    assert "not JSON" in (sync["last_error"] or ""), sync
