"""``[server] style``: our server's default, and the reference server's behaviour (openracs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from elock_testkit.racs_applets import FIXED
from elock_testkit.racs_pki import Pki
from racs.errors import RemoteRacsError
from racs.style import ServerStyle
from tests.racs.conftest import Harness, start_harness

WRONG_LE = bytes.fromhex("0002000000")  # the test applet wants Le = 0A: 6C0A
LONG = bytes.fromhex("0003012C")  # 300 bytes: 61xx


@pytest.fixture
async def openracs(pki: Pki) -> AsyncIterator[Harness]:
    h = await start_harness(pki, ["card2"], style=ServerStyle.OPENRACS)
    yield h
    for client in h.clients:
        await client.close()
    await h.server.close()


async def test_openracs_passes_61xx_and_6cxx_back_unless_asked(openracs: Harness) -> None:
    client = await openracs.connect("bob")
    await client.power_on("card2")
    bare = await client.apdu("card2", LONG, more=None, fetch=None)
    assert bare == b"\x61\x00"  # the test applet answers "256 more" first
    assert await client.apdu("card2", WRONG_LE, more=None, fetch=None) == b"\x6c\x0a"
    fetched = await client.apdu("card2", LONG)  # MORE=61 FETCH=00C00000
    assert fetched == bytes(i & 0xFF for i in range(300)) + b"\x90\x00"
    # FETCH= alone asks for nothing (the reference server reads it only with MORE=).
    assert await client.apdu("card2", LONG, more=None) == b"\x61\x00"
    # CONTINUE= asks the server to go on to a final status: 6Cxx is re-sent with the right Le.
    assert await client.apdu("card2", WRONG_LE, 0x9000, more=None) == FIXED + b"\x90\x00"
    with pytest.raises(RemoteRacsError) as refused:
        await client.apdu("card2", LONG, 0x9000, more=None, fetch=None)
    assert refused.value.code == "-006"  # 61xx is not the status asked for


async def test_openracs_names_the_se_as_the_reference_server_does(openracs: Harness) -> None:
    client = await openracs.connect("bob")
    assert await client.power_on("card2") == "SEID card2 has been powered on"
    again = await client.power_on("card2")
    assert again == "warning SEID card2 was already powered, POWERON has been ignored"
    assert await client.reset("card2") == "SEID card2 has been resetted"
    assert await client.reset("card2", warm=True) == "SEID card2 has been resetted (warm)"
    assert await client.shutdown("card2") == "SEID card2 has been powered off"


async def test_our_style_fetches_and_resends_unasked(harness: Harness) -> None:
    client = await harness.connect("bob")
    assert await client.power_on("card2") == "card2 is powered on"
    assert await client.apdu("card2", LONG, more=None, fetch=None) == bytes(
        i & 0xFF for i in range(300)
    ) + bytes.fromhex("9000")
    assert await client.apdu("card2", WRONG_LE, more=None, fetch=None) == FIXED + b"\x90\x00"
