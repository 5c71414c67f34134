"""Frames far above the sync formats' limits, from peers that never authenticate.

``/sync/lock`` takes frames of at most ``lock_sync.MAX_MESSAGE`` (1 MiB) and the
card sync of ``card_sync.MAX_MESSAGE``; the server refuses larger ones, but
only once the WebSocket layer has read the whole frame into memory. With
uvicorn's own default (16 MiB) every one of ``max_handshakes`` anonymous
connections could make the key server hold 16 MiB (and decode it), so the
WebSocket layer must end a frame far above both limits before buffering it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.key_provisioner.test_lock_sync_endpoint import Server, sync_keyserver

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    database = f"sqlite:///{tmp_path / 'ks.sqlite3'}"
    with sync_keyserver(tmp_path / "keyserver", database) as server:
        yield server


async def _close_code(url: str, frame: str) -> int | None:
    async with connect(url, max_size=None, ping_interval=None, close_timeout=2) as ws:
        try:
            await ws.send(frame)
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def test_a_frame_of_several_mib_is_cut_off_by_the_websocket_layer(server: Server) -> None:
    code = await _close_code(server.sync_url, "x" * (12 << 20))
    assert code == 1009, code  # "message too big", before the application saw it
