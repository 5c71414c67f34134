"""The real asyncio TLS server, in process, driven by the client library and raw TLS."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from elock_testkit.racs_applets import ELOCK_AID, FIXED, OTHER_AID
from elock_testkit.racs_pki import Pki
from racs.access import AccessPolicy
from racs.errors import RemoteRacsError
from racs.session import Limits
from tests.racs.conftest import Harness, raw_client_context, start_harness


def select(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid


async def raw_session(h: Harness, cn: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", h.port, ssl=h.ssl_for(cn))


async def read_block(reader: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    while not lines or lines[-1] != "END":
        raw = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
        lines.append(raw.decode().rstrip("\r\n"))
    return lines


async def until_free(h: Harness, seid: str) -> None:
    for _ in range(200):
        if h.registry.slots[seid].owner is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{seid} stayed locked")


async def test_seed_example_block_over_tls(harness: Harness) -> None:
    reader, writer = await raw_session(harness, "alice")
    writer.write(
        b"BEGIN MyLabel\r\nGET-VERSION APPEND\r\nLIST APPEND\r\nPOWERON card1 APPEND\r\n"
        b"RESET card1 APPEND\r\nAPDU card1\r\n00A404000B"
        + ELOCK_AID.hex().encode()
        + b"\r\nEND\r\n"
    )
    assert await read_block(reader) == [
        "BEGIN MyLabel",
        "+002 001 0.2",
        "+004 002 card1 card2 shared",
        "+008 003 card1 is powered on",
        "+005 004 card1 reseted",
        "+006 005 9000",
        "END",
    ]
    writer.close()
    await until_free(harness, "card1")


async def test_client_library_round_trip(harness: Harness) -> None:
    client = await harness.connect("alice")
    assert await client.get_version() == "0.2"
    assert await client.echo("hello RACS") == "hello RACS"
    assert await client.list_seids() == ["card1", "card2", "shared"]
    assert await client.power_on("card2") == "card2 is powered on"
    assert "already" in await client.power_on("card2")
    assert await client.apdu("card2", bytes.fromhex("0002000000")) == FIXED + b"\x90\x00"
    long = await client.apdu("card2", bytes.fromhex("0003012C"), expect_sw=0x9000)
    assert long == bytes(i & 0xFF for i in range(300)) + b"\x90\x00"
    answers = await client.script("card2", [select(OTHER_AID), bytes.fromhex("0001000003ABCDEF")])
    assert answers == [b"\x90\x00", bytes.fromhex("ABCDEF9000")]
    assert harness.registry.slots["card2"].selected_aid == OTHER_AID
    with pytest.raises(RemoteRacsError) as info:
        await client.apdu("card2", bytes.fromhex("00FF0000"), expect_sw=0x9000)
    assert info.value.code == "-006"
    await client.reset("card2")
    assert harness.registry.slots["card2"].selected_aid is None
    assert await client.shutdown("card2") == "card2 is powered off"
    assert harness.registry.slots["card2"].owner is None


async def test_refusals_say_why(harness: Harness) -> None:
    alice, bob = await harness.connect("alice"), await harness.connect("bob")
    with pytest.raises(RemoteRacsError, match="user bob may not use SEID card1") as info:
        await bob.power_on("card1")
    assert info.value.code == "-608"
    with pytest.raises(RemoteRacsError, match="no secure element has SEID nosuch"):
        await bob.power_on("nosuch")
    with pytest.raises(RemoteRacsError, match="powered off, POWERON is required") as info:
        await alice.apdu("card1", select(ELOCK_AID))
    assert info.value.code == "-306"
    await alice.power_on("card1")
    applet = harness.applets["card1"]
    with pytest.raises(RemoteRacsError, match="may not select AID A0000000041010") as info:
        await alice.apdu("card1", select(OTHER_AID))
    assert info.value.code == "-606"
    assert await alice.apdu("card1", select(ELOCK_AID)) == b"\x90\x00"
    with pytest.raises(RemoteRacsError, match="blocked by a filter"):
        await alice.apdu("card1", bytes.fromhex("80E60C0000"))
    assert all(a[:2] != b"\x80\xe6" and a != select(OTHER_AID) for a in applet.received)


async def test_locked_se_refuses_other_sessions_until_released(harness: Harness) -> None:
    alice, bob = await harness.connect("alice"), await harness.connect("bob")
    await alice.power_on("shared")
    for call, code in [
        (bob.power_on("shared"), "-708"),
        (bob.apdu("shared", b"\x00\x01\x00\x00"), "-706"),
        (bob.reset("shared"), "-705"),
        (bob.shutdown("shared"), "-707"),
    ]:
        with pytest.raises(RemoteRacsError, match="locked by another session") as info:
            await call
        assert info.value.code == code
    await alice.close()
    await until_free(harness, "shared")
    assert await bob.power_on("shared") == "shared is powered on"


async def test_no_certificate_or_untrusted_certificate_gets_no_session(
    pki: Pki, harness: Harness
) -> None:
    for cert, key in [(None, None), (pki.untrusted.cert, pki.untrusted.key)]:
        ctx = raw_client_context(pki, cert, key)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection("127.0.0.1", harness.port, ssl=ctx)
            writer.write(b"BEGIN\r\nLIST\r\nEND\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
            pytest.fail(f"got an answer without a valid certificate: {line!r}")
    assert harness.server.session_count == 0


async def test_certificate_without_cn_is_refused(pki: Pki, harness: Harness) -> None:
    ctx = raw_client_context(pki, pki.no_cn.cert, pki.no_cn.key)
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.port, ssl=ctx)
    assert await read_block(reader) == ["BEGIN", "-600 000 certificate has no CN", "END"]
    assert await reader.read() == b""
    writer.close()


async def test_garbage_gets_error_lines_and_the_server_lives_on(harness: Harness) -> None:
    reader, writer = await raw_session(harness, "alice")
    writer.write(b"\x00\xff\xfegarbage\r\nBEGIN g\r\nPOWERON card1\r\nFLY AWAY\r\nEND\r\n")
    assert await read_block(reader) == ["BEGIN", "-100 000 line is not ASCII text", "END"]
    assert await read_block(reader) == ["BEGIN g", "-100 002 unknown command 'FLY'", "END"]
    writer.write(b"BEGIN ok\r\nECHO still here\r\nEND\r\n")
    assert await read_block(reader) == ["BEGIN ok", "+009 001 still here", "END"]
    writer.close()
    await until_free(harness, "card1")


async def test_overlong_line_closes_the_session_and_frees_its_se(pki: Pki) -> None:
    h = await start_harness(pki, ["card1"], limits=Limits(max_line=256))
    try:
        reader, writer = await raw_session(h, "alice")
        writer.write(b"BEGIN a\r\nPOWERON card1 APPEND\r\n" + b"A" * 4096)
        lines = await read_block(reader)
        assert lines[1] == "-500 002 line longer than 256 bytes"
        assert await reader.read() == b""
        await until_free(h, "card1")
        assert h.applets["card1"].resets == 1  # powered on once, never used again
    finally:
        await h.server.close()


async def test_disconnect_mid_block_unlocks(harness: Harness) -> None:
    _, writer = await raw_session(harness, "alice")
    writer.write(b"BEGIN half\r\nPOWERON card1 APPEND\r\nAPDU card1 00A4")
    await writer.drain()
    for _ in range(200):
        if harness.registry.slots["card1"].owner is not None:
            break
        await asyncio.sleep(0.01)
    assert harness.registry.slots["card1"].powered
    writer.transport.abort()
    await until_free(harness, "card1")
    assert not harness.registry.slots["card1"].powered


async def test_idle_client_is_cut_off_and_its_se_freed(pki: Pki) -> None:
    h = await start_harness(pki, ["card1"], idle_timeout=0.3)
    try:
        reader, writer = await raw_session(h, "alice")
        writer.write(b"BEGIN a\r\nPOWERON card1\r\nEND\r\nBEGIN slow\r\nECH")
        assert (await read_block(reader))[1] == "+008 001 card1 is powered on"
        lines = await read_block(reader)
        assert lines[1].startswith("-900 000 no complete line for 0.3 s")
        await until_free(h, "card1")
    finally:
        await h.server.close()


async def test_server_shutdown_frees_every_se(pki: Pki) -> None:
    h = await start_harness(pki, ["card1", "card2"])
    a, c = await h.connect("alice"), await h.connect("carol")
    await a.power_on("card1")
    await c.power_on("card2")
    await h.server.close()
    assert all(s.owner is None and not s.powered for s in h.registry.slots.values())
    await a.close()
    await c.close()


async def test_hundred_concurrent_sessions_each_on_its_own_card(pki: Pki) -> None:
    seids = [f"card{i:03d}" for i in range(100)]
    h = await start_harness(
        pki, seids, AccessPolicy(users={"carol": frozenset({"*"})}, se_default_access=True)
    )
    try:

        async def one(seid: str) -> list[bytes]:
            client = await h.connect("carol")
            await client.power_on(seid)
            payload = seid.encode()
            out = await client.script(
                seid,
                [
                    select(ELOCK_AID),
                    bytes([0, 1, 0, 0, len(payload)]) + payload,
                    bytes.fromhex("0002000000"),
                ],
            )
            await client.shutdown(seid)
            await client.close()
            return out

        results = await asyncio.gather(*(one(s) for s in seids))
        for seid, out in zip(seids, results, strict=True):
            assert out == [b"\x90\x00", seid.encode() + b"\x90\x00", FIXED + b"\x90\x00"]
        assert all(s.owner is None for s in h.registry.slots.values())
    finally:
        await h.server.close()


async def test_two_sessions_racing_for_one_se_one_wins(harness: Harness) -> None:
    alice, carol = await harness.connect("alice"), await harness.connect("carol")
    results = await asyncio.gather(
        alice.power_on("shared"), carol.power_on("shared"), return_exceptions=True
    )
    # The loser is told the SE is busy, as a type (a RemoteRacsError of class IN_USE).
    assert sorted(type(r).__name__ for r in results) == ["SecureElementBusyError", "str"]
    owner = harness.registry.slots["shared"].owner
    assert owner is not None and harness.registry.owned_by(owner) == ["shared"]
