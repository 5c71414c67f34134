"""The PC/SC backend through the real stack: pcscd, the vpcd reader driver, pyscard.

Our own vpcd card (tests/racs/vpcd.py) puts the test applet in "Virtual PCD 00
00", so this test does not depend on the firmware's virtual card. pcscd is
started here unless one is already running.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from elock_testkit.racs_applets import ELOCK_AID, FIXED, TestApplet
from elock_testkit.racs_pki import Pki
from racs.access import AccessPolicy
from racs.backends import DEFAULT_ATR, PcscCard, list_pcsc_readers
from racs.client import RacsClient, client_ssl_context
from racs.registry import Registry, Slot
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService
from tests.conftest import require_tool
from tests.racs.vpcd import VirtualCard

READER = "Virtual PCD 00 00"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


def wait_for_card(reader: str, timeout: float = 10.0) -> None:
    """pcscd polls the vpcd driver: wait until it reports the card present."""
    from smartcard import scard  # type: ignore[import-untyped]

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hresult, states = scard.SCardGetStatusChange(
                ctx, 500, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            if hresult == scard.SCARD_S_SUCCESS and states[0][1] & scard.SCARD_STATE_PRESENT:
                return
            time.sleep(0.1)
        pytest.fail(f"no card shows up in {reader!r}")
    finally:
        scard.SCardReleaseContext(ctx)


@pytest.fixture(scope="module")
def vpcd_card() -> Iterator[TestApplet]:
    pcscd = require_tool("pcscd")
    if not VPCD_DRIVER.exists():
        pytest.fail("the vpcd reader driver is missing: install vsmartcard-vpcd")
    daemon = None
    if not Path("/run/pcscd/pcscd.comm").exists():
        daemon = subprocess.Popen([pcscd, "--foreground", "--error"], stdout=subprocess.DEVNULL)
    applet = TestApplet()
    card = VirtualCard(applet)
    card.start()
    try:
        if not card.connected.wait(15):
            pytest.fail("could not connect a virtual card to pcscd's vpcd driver (TCP 35963)")
        for _ in range(100):
            if READER in list_pcsc_readers():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"pcscd does not show {READER!r}: {list_pcsc_readers()}")
        wait_for_card(READER)
        yield applet
    finally:
        card.stop()
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)


@pytest.mark.peer
async def test_pcsc_card_direct(vpcd_card: TestApplet) -> None:
    card = PcscCard(READER)
    assert await card.power_on() == DEFAULT_ATR
    assert await card.transmit(bytes.fromhex("0002000000")) == b"\x6c\x0a"
    assert (await card.reset(warm=True)) == DEFAULT_ATR
    await card.power_off()


@pytest.mark.peer
async def test_racs_over_pcsc(vpcd_card: TestApplet, pki: Pki) -> None:
    registry = Registry([Slot("vcard", PcscCard(READER))])
    policy = AccessPolicy(users={"alice": frozenset({"vcard"})}, se_default_access=True)
    ctx = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    server = RacsServer(RacsService(registry, policy), ctx, port=0)
    await server.start()
    alice = pki.users["alice"]
    client = await RacsClient.connect(
        "127.0.0.1", server.port, client_ssl_context(alice.cert, alice.key, pki.ca)
    )
    try:
        assert await client.power_on("vcard") == "vcard is powered on"
        select = bytes([0, 0xA4, 4, 0, len(ELOCK_AID)]) + ELOCK_AID
        out = await client.script(
            "vcard", [select, bytes.fromhex("0002000000"), bytes.fromhex("00030200")]
        )
        assert out[:2] == [b"\x90\x00", FIXED + b"\x90\x00"]
        assert out[2] == bytes(i & 0xFF for i in range(512)) + b"\x90\x00"
        await client.close()
        for _ in range(100):
            if registry.slots["vcard"].owner is None:
                break
            await asyncio.sleep(0.01)
        assert registry.slots["vcard"].owner is None and not registry.slots["vcard"].powered
    finally:
        await client.close()
        await server.close()
