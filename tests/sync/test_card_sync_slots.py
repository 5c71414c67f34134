"""One address cannot hold every card-sync slot of a key server.

``elock-keyserver serve`` with its default limits (30 syncs a minute per
address, 16 at once). A hostile peer at 127.0.0.2 opens as many syncs as the
server admits, says hello and then never answers a script: each admitted one
holds a slot until ``push.timeout``. Meanwhile a real host at 127.0.0.1 syncs
its card with ``coap-open --sync``: it must be served, not told "too many
syncs" because of one other address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from elock_common import card_sync as wire
from elock_common import pki
from tests.sync.conftest import HERE
from tests.sync.stack import KeyServer, coap_open, personalize_card

pytestmark = pytest.mark.peer

ATTACKER = "127.0.0.2"  # on lo like 127.0.0.1: another client address to the key server
CONNECTIONS = 20  # more than the 16 syncs at once a server process runs by default


async def stalled_sync(url: str) -> tuple[ClientConnection, bool]:
    """A sync that says hello and never answers; whether the server admitted it."""
    ws = await connect(url, local_addr=(ATTACKER, 0), compression=None, ping_interval=None)
    with contextlib.suppress(ConnectionClosed):  # refused at once: the reason is still to read
        await ws.send(wire.encode(wire.Hello()))
    async with asyncio.timeout(10):
        while True:
            message = wire.decode_server_message(await ws.recv())
            if isinstance(message, wire.Apdus):
                return ws, True  # admitted: the server waits for the card's answer now
            if isinstance(message, wire.Refused):
                return ws, False


async def hold_slots_and_sync(api: KeyServer, card: Path) -> tuple[int, int, dict[str, str]]:
    url = api.url.replace("http", "ws", 1) + wire.PATH
    held = await asyncio.gather(*(stalled_sync(url) for _ in range(CONNECTIONS)))
    try:
        admitted = sum(ok for _, ok in held)
        code, out = await asyncio.to_thread(coap_open, HERE, "--sync", "--card", str(card))
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in held))
    return admitted, code, out


def test_one_address_cannot_take_every_sync_slot(
    paths: pki.PkiPaths, api: KeyServer, tmp_path: Path
) -> None:
    card = personalize_card(tmp_path, paths, "phone-0005", api.url)
    api.ok("POST", "/secure-elements", {"seid": "phone-0005"}, 201)
    admitted, code, out = asyncio.run(hold_slots_and_sync(api, card))
    assert (code, out["status"]) == (0, "synced"), json.dumps(out)
    assert 0 < admitted < 16, admitted
