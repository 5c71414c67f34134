"""The push against a RACS server that fetches nothing unasked, as the draft author's does.

``racs.style.ServerStyle.OPENRACS`` passes a card's 61xx/6Cxx back unless the
APDU line asks with ``MORE=``/``CONTINUE=``. The APDU audit log then shows who
did the fetching: the server on the client's ``MORE=61 FETCH=00C00000``, or
the client's own GET RESPONSE when it asks for nothing.
"""

from __future__ import annotations

from pathlib import Path

from elock_common import card_protocol as c
from elock_common import pki
from elock_push import Install, Outcome
from elock_push.card_link import GET_CERTIFICATE, CardLink
from elock_testkit.push_harness import door_key, make_card, start_racs
from racs.client import RacsClient, client_ssl_context
from racs.style import ServerStyle
from tests.push.conftest import SEID

GET_RESPONSE = bytes.fromhex("00C00000")
SELECT_ELOCK = bytes([0x00, 0xA4, 0x04, 0x00, len(c.AID)]) + c.AID


def exchanges(log: Path) -> list[tuple[bytes, bytes]]:
    """(command, response) of every line of the APDU audit log, in order."""
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        out.append((bytes.fromhex(parts[-3]), bytes.fromhex(parts[-1])))
    return out


def fetched_after_certificate(log: Path) -> list[bytes]:
    """The commands that followed the GET DATA of the card's certificate to its end."""
    seen = exchanges(log)
    start = next(i for i, (cmd, _) in enumerate(seen) if cmd == GET_CERTIFICATE)
    follow = []
    for command, response in seen[start + 1 :]:
        if command[:4] != GET_RESPONSE:
            break
        follow.append(command)
        if response[-2] != 0x61:
            break
    return follow


async def racs_client(paths: pki.PkiPaths, port: int) -> RacsClient:
    user = paths.racs_users["keyserver"]
    ctx = client_ssl_context(user.cert, user.key, paths.racs_ca.cert)
    return await RacsClient.connect("127.0.0.1", port, ctx)


async def test_a_server_that_passes_61xx_through_answers_the_bare_apdu_in_part(
    push_pki: pki.PkiPaths,
) -> None:
    racs = await start_racs(push_pki, {SEID: make_card(push_pki, SEID)}, style=ServerStyle.OPENRACS)
    try:
        async with await racs_client(push_pki, racs.port) as client:
            assert await client.power_on(SEID) == f"SEID {SEID} has been powered on"
            await client.apdu(SEID, SELECT_ELOCK)
            bare = await client.apdu(SEID, GET_CERTIFICATE, more=None, fetch=None)
            assert len(bare) == 258 and bare[-2] == 0x61  # 256 bytes and "61xx": fetch the rest
            asked = await client.apdu(SEID, GET_CERTIFICATE)  # MORE=61 FETCH=00C00000
            assert asked[-2:] == b"\x90\x00" and asked[:256] == bare[:256] and len(asked) > 258
    finally:
        await racs.close()


async def test_in_pass_through_mode_the_clients_more_and_fetch_do_the_fetching(
    push_pki: pki.PkiPaths, tmp_path: Path
) -> None:
    key = door_key("Front door", "coaps://127.0.0.1/lock", "interop-key-0001", "p" * 32)
    reports = {}
    for style in ServerStyle:
        log = tmp_path / f"{style.value}.log"
        card = make_card(push_pki, SEID)
        racs = await start_racs(push_pki, {SEID: card}, log, style=style)
        try:
            report = await racs.pusher().push(SEID, [Install(key)])
        finally:
            await racs.close()
        assert [r.outcome for r in report.results] == [Outcome.INSTALLED]
        assert [k.container_id for k in card.keyring.all()] == [1]
        # 555 bytes of certificate: 256 with the GET DATA, then 256 + 43 by GET RESPONSE.
        assert len(fetched_after_certificate(log)) == 2
        reports[style] = (report.apdus, report.round_trips)
    # The server fetched on the client's MORE=/FETCH=: not one GET RESPONSE came from the
    # client, so the pass-through server costs no round trip more than ours.
    assert reports[ServerStyle.OPENRACS] == reports[ServerStyle.ELOCK]


async def test_asking_for_nothing_the_client_follows_61xx_itself(
    push_pki: pki.PkiPaths, tmp_path: Path
) -> None:
    log = tmp_path / "apdus.log"
    racs = await start_racs(
        push_pki, {SEID: make_card(push_pki, SEID)}, log, style=ServerStyle.OPENRACS
    )
    try:
        async with await racs_client(push_pki, racs.port) as client:
            link = CardLink(client, SEID, ask_server_to_fetch=False)
            await link.power_on_and_select()
            der = await link.certificate()
            assert len(der) > 256 and der[0] == 0x30  # the whole certificate
            assert (link.apdus, link.round_trips) == (
                4,
                5,
            )  # POWERON; SELECT, GET DATA, 2 GET RESPONSE
        assert len(fetched_after_certificate(log)) == 2  # the same fetch, by the client
    finally:
        await racs.close()
