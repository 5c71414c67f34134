"""A slow in-process card stalls no other RACS session with racs.toml's defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path

from elock_testkit.racs_applets import SlowApplet
from elock_testkit.racs_pki import Pki
from racs.backends import InProcessCard
from racs.config import build_registry, load_config
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService
from tests.racs.conftest import Harness
from tests.racs.test_cli import write_config


async def test_a_slow_card_leaves_other_sessions_answering(pki: Pki, tmp_path: Path) -> None:
    slow = '[[se]]\nseid = "SlowSEID"\napplet = "elock_testkit.racs_applets:slow_factory"\n'
    config = write_config(tmp_path, pki, slow)  # no 'offload' key: the default
    (tmp_path / "users.txt").write_text("alice 1 SlowSEID\nbob 1 OtherSEID\n")
    cfg = load_config(config)
    registry = await build_registry(cfg)
    card = registry.slots["SlowSEID"].se
    assert isinstance(card, InProcessCard) and card.offload
    applet = card.applet
    assert isinstance(applet, SlowApplet)
    ctx = server_ssl_context(cfg.cert, cfg.key, cfg.client_ca)
    server = RacsServer(RacsService(registry, cfg.policy), ctx, port=0)
    await server.start()
    h = Harness(pki, server, {})
    try:
        alice, bob = await h.connect("alice"), await h.connect("bob")
        await alice.power_on("SlowSEID")
        stuck = asyncio.create_task(alice.apdu("SlowSEID", bytes.fromhex("0001000001AA")))
        assert await asyncio.to_thread(applet.started.wait, 10)  # the card is busy now ...
        async with asyncio.timeout(5):  # ... and another session is still served
            assert await bob.echo("still here") == "still here"
            await bob.power_on("OtherSEID")
            assert await bob.apdu("OtherSEID", bytes.fromhex("0001000001BB")) == b"\xbb\x90\x00"
        applet.go.set()
        assert await asyncio.wait_for(stuck, 10) == b"\xaa\x90\x00"
    finally:
        applet.go.set()
        for client in h.clients:
            await client.close()
        await server.close()
