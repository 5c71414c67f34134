"""A man in the middle of ``/sync/lock`` (plain ``ws://``, or a hostile TLS-ending
proxy) who rewrites the lock's hello, without K_lock.

The hello is sent before any key is agreed, so it carries no MAC; what it says
(the revocation version the lock holds) steered the key server: told "the lock
holds your version", the server sent no list and showed the lock as in sync,
while the lock kept its old list, on which a revoked key still opens. Told the
highest version there is, the server numbered its list above anything a lock
accepts, and no lock with that id ever synced again, attacker gone or not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from elock_common.lock_sync import MAX_MESSAGE, MAX_VERSION
from elock_testkit.synclock import LightLock
from tests.key_provisioner.test_lock_sync_endpoint import Server, sync_keyserver

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    with sync_keyserver(tmp_path / "keyserver", database_url) as server:
        yield server


async def _pipe(source: object, sink: object) -> None:
    try:
        async for frame in source:  # type: ignore[attr-defined]
            await sink.send(frame)  # type: ignore[attr-defined]
    except ConnectionClosed:
        pass
    finally:
        await sink.close()  # type: ignore[attr-defined]


@asynccontextmanager
async def tampering_proxy(upstream: str, claimed_version: int) -> AsyncIterator[str]:
    """A WebSocket proxy that rewrites the hello's revocation version, relays the rest."""

    async def relay(lock_side: ServerConnection) -> None:
        hello = json.loads(await lock_side.recv())
        hello["revocation_version"] = claimed_version
        async with connect(upstream, max_size=MAX_MESSAGE, ping_interval=None) as key_side:
            await key_side.send(json.dumps(hello, separators=(",", ":"), sort_keys=True))
            await asyncio.gather(_pipe(lock_side, key_side), _pipe(key_side, lock_side))

    async with serve(relay, "127.0.0.1", 0, max_size=MAX_MESSAGE, ping_interval=None) as proxy:
        yield f"ws://127.0.0.1:{proxy.sockets[0].getsockname()[1]}/sync/lock"


async def _through(proxy: str, lock: LightLock) -> None:
    """Connect through the proxy until the lock is synced or the connection ended."""
    await lock.connect(proxy)
    try:
        synced = asyncio.create_task(lock.synced.wait())
        ended = asyncio.create_task(lock.ended.wait())
        await asyncio.wait({synced, ended}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        synced.cancel()
        ended.cancel()
    finally:
        await lock.close()


async def test_a_rewritten_hello_cannot_skip_the_list_or_fake_its_delivery(
    server: Server,
) -> None:
    lock_id, secret = server.enrol("tampered-hello")
    version = await asyncio.to_thread(server.revoke_new_key, lock_id)
    lock = LightLock(lock_id, secret)  # holds list 0: the revoked key still opens
    async with tampering_proxy(server.sync_url, version) as proxy:
        await _through(proxy, lock)
    shown = server.ok("GET", f"/locks/{lock_id}")["revocation"]
    assert not (shown["in_sync"] and lock.held < version), (shown, lock.held, lock.closed)
    assert lock.held == version or "hello was changed" in (lock.closed or ""), lock.closed


async def test_a_rewritten_hello_cannot_push_the_servers_version_out_of_range(
    server: Server,
) -> None:
    lock_id, secret = server.enrol("tampered-version")
    async with tampering_proxy(server.sync_url, MAX_VERSION) as proxy:
        await _through(proxy, LightLock(lock_id, secret))
    # The attacker is gone; the lock dials its key server directly.
    honest = LightLock(lock_id, secret)
    await honest.connect(server.sync_url)
    try:
        await asyncio.wait_for(honest.synced.wait(), 10)
        version = await asyncio.to_thread(server.revoke_new_key, lock_id)
        await honest.in_sync(version, 5.0)
        assert version < MAX_VERSION
    finally:
        await honest.close()
