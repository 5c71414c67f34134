"""A host that leaves mid-sync, right after answering, costs the key server nothing it knew.

``elock-keyserver serve``; the host is this test, relaying a real card file
through ``key_client`` as ``coap-open --sync`` does, except that it sends one
answer and closes the WebSocket at once (a phone whose app is killed, a hostile
host). The key server notices when it next sends, and that must be a
``TransportError`` like any other way a host goes away:

- gone after the handshake, when the server has claimed the card's keys: they
  are released as admin-api.md says (due again at once, ``last_error``
  ``host sync: ...``), and the next sync installs them;
- gone after answering the INSTALL flight: the card's authenticated answer
  came, so the key is ``installed`` now, not left leased as ``pending``;
- too slow: each answer within ``push.timeout`` but the whole sync past its
  limit (3 x ``push.timeout``) in the middle of the INSTALL: released like a
  host gone, ``host sync: the sync took too long``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from elock_common import card_sync as wire
from elock_common import pki
from elock_testkit.ports import free_udp_port
from elock_testkit.waiting import wait_for
from key_client import cards
from key_client.errors import SyncError
from key_client.sync import SyncRelay
from tests.sync.conftest import HERE
from tests.sync.stack import KeyServer, coap_open, personalize_card

pytestmark = pytest.mark.peer

SW_TLS_OPEN = "9001"


async def answer_and_leave(api: KeyServer, card: Path, moment: str) -> None:
    """Relay the sync until *moment* ("handshake" or "install") is answered, then close.

    "slow": answer every script late, each within push.timeout (10 s) but all
    together past the sync's limit (3 x 10 s), which comes during the INSTALL.
    """
    url = api.url.replace("http", "ws", 1) + wire.PATH
    with cards.connect(card_file=card) as channel:
        side = SyncRelay(channel.relay)
        async with asyncio.timeout(60):
            async with connect(url, compression=None, ping_interval=None) as ws:
                await ws.send(side.hello())
                updating = False
                while True:
                    try:
                        message = side.receive(await ws.recv())
                    except SyncError:  # refused: for "slow", the keys' state says the rest
                        if moment == "slow":
                            return
                        raise
                    if isinstance(message, wire.Progress):
                        updating = updating or message.stage.startswith("updating")
                    elif isinstance(message, wire.Apdus):
                        answer = await asyncio.to_thread(side.run_script, message)
                        if moment == "slow":  # the host's own pace
                            await asyncio.sleep(9 if updating else 5.5)
                            with contextlib.suppress(ConnectionClosed):  # the server gave up
                                await ws.send(answer)
                            continue
                        await ws.send(answer)
                        answers = wire.decode_host_message(answer)
                        assert isinstance(answers, wire.Answers)
                        opened = answers.responses[-1][-2:].hex()
                        if moment == "install" and updating:
                            return
                        if moment == "handshake" and opened == SW_TLS_OPEN and not updating:
                            return
                    elif moment == "slow":
                        return  # the server ended the sync: its outcome says why
                    else:
                        raise AssertionError(f"the sync ended before the {moment}: {message}")


def push_of(api: KeyServer, key: dict[str, Any]) -> dict[str, Any]:
    push: dict[str, Any] = api.ok("GET", f"/keys/{key['id']}")["push"]
    return push


@pytest.mark.parametrize("moment", ["handshake", "install", "slow"])
def test_a_host_that_leaves_right_after_answering(
    paths: pki.PkiPaths, api: KeyServer, tmp_path: Path, moment: str
) -> None:
    card = personalize_card(tmp_path, paths, "phone-0006", api.url)
    lock = api.ok("POST", "/locks", {"name": "door", "host": "127.0.0.1",
                                    "port": free_udp_port()}, 201)["lock"]  # fmt: skip
    se = api.ok("POST", "/secure-elements", {"seid": "phone-0006"}, 201)
    key = api.ok("POST", "/keys", {"lock_id": lock["id"], "secure_element_id": se["id"]}, 201)

    asyncio.run(answer_and_leave(api, card, moment))
    # Well inside the claim's lease (2 x push.timeout + 5 = 25 s): nothing waits for it.
    if moment == "install":
        wait_for(lambda: push_of(api, key)["state"] == "installed", 10, "installed")
    else:
        push = wait_for(lambda: (p := push_of(api, key))["last_error"] and p, 10, "released")
    log = tmp_path / "ks" / "keyserver.log"
    wait_for(lambda: "card sync from 127.0.0.1 ended" in log.read_text(), 10, "the sync's end")
    assert "Exception in ASGI application" not in log.read_text()  # a host gone is no crash
    if moment == "install":
        return
    assert push["state"] == "pending" and push["attempts"] == 1, push
    assert str(push["last_error"]).startswith("host sync: "), push
    if moment == "slow":
        assert push["last_error"] == "host sync: the sync took too long", push
    code, out = coap_open(HERE, "--sync", "--card", str(card))  # due again at once
    assert (code, out["added"]) == (0, 1), out
    assert push_of(api, key)["state"] == "installed"
