"""A card synced through its host, on loopback: issue, sync, open, revoke, sync; refusals.

The same story as the namespace test (``test_host_sync_netns``), quicker to
run while developing, plus what a hostile or broken peer gets: a card the key
server never registered, a card of another issuer, a host that asks nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from elock_common import pki
from elock_testkit.ports import free_tcp_port, free_udp_port
from tests.sync.conftest import HERE, Procs
from tests.sync.stack import (
    PY,
    KeyServer,
    coap_open,
    enrol_lock,
    personalize_card,
    start_keyserver,
)

pytestmark = pytest.mark.peer


def test_issue_sync_open_revoke_sync(
    procs: Procs, paths: pki.PkiPaths, api: KeyServer, tmp_path: Path
) -> None:
    card = personalize_card(tmp_path, paths, "phone-0001", api.url)
    lock_port = free_udp_port()
    lock_id, _ = enrol_lock(procs.spawn, HERE, api, tmp_path, lock_port)
    se = api.ok("POST", "/secure-elements", {"seid": "phone-0001", "label": "a phone"}, 201)
    assert se["delivery"] == "host" and se["racs_server"] is None and se["synced_at"] is None
    key = api.ok("POST", "/keys", {"lock_id": lock_id, "secure_element_id": se["id"],
                                   "label": "Front door"}, 201)  # fmt: skip
    assert api.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "pending"

    code, out = coap_open(HERE, "--sync", "--card", str(card))
    assert (code, out["status"], out["added"], out["removed"]) == (0, "synced", 1, 0), out
    push = api.ok("GET", f"/keys/{key['id']}")["push"]
    assert push["state"] == "installed" and push["container_id"] == 1, push
    assert api.ok("GET", f"/secure-elements/{se['id']}")["synced_at"] is not None
    code, out = coap_open(HERE, "--card", str(card), "Front door")
    assert (code, out["status"]) == (0, "opened"), out

    code, out = coap_open(HERE, "--sync", "--card", str(card))  # nothing due: nothing done
    assert (code, out["added"], out["removed"]) == (0, 0, 0), out

    api.ok("POST", f"/keys/{key['id']}/revoke", {"reason": "lost"})
    assert api.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "removing"
    code, out = coap_open(HERE, "--sync", "--card", str(card))
    assert (code, out["added"], out["removed"]) == (0, 0, 1), out
    assert api.ok("GET", f"/keys/{key['id']}")["push"]["state"] == "removed"
    code, out = coap_open(HERE, "--list", "--card", str(card))
    assert (code, out) == (0, []), out


def _sync_answer(tmp_path: Path, card: Path) -> tuple[int, Any]:
    return coap_open(HERE, "--sync", "--card", str(card))


def test_unknown_and_foreign_cards_learn_nothing(
    paths: pki.PkiPaths, api: KeyServer, tmp_path: Path
) -> None:
    registered = personalize_card(tmp_path, paths, "phone-0002", api.url)
    unknown = personalize_card(tmp_path, paths, "phone-0003", api.url)
    api.ok("POST", "/secure-elements", {"seid": "phone-0002"}, 201)
    # A registered card with nothing due and an unknown one get the very same answer.
    assert _sync_answer(tmp_path, registered) == _sync_answer(tmp_path, unknown)
    assert _sync_answer(tmp_path, unknown)[1]["added"] == 0
    # A card of another issuer is refused before any database read.
    other = pki.init_pki(tmp_path / "other-pki")
    foreign = personalize_card(tmp_path / "other-pki", other, "phone-0002", api.url)
    code, out = coap_open(HERE, "--sync", "--card", str(foreign))
    assert code == 8 and "not accepted" in out["message"], out


def test_a_flood_is_refused_early(procs: Procs, paths: pki.PkiPaths, tmp_path: Path) -> None:
    # 6 syncs a minute per address: one more every 10 s, so the refusal below is certain.
    api = start_keyserver(procs.spawn, HERE, tmp_path / "ks", paths, listen="127.0.0.1",
                          port=free_tcp_port(), push_extra="sync_per_minute = 6\n")  # fmt: skip
    card = personalize_card(tmp_path, paths, "phone-0004", api.url)
    flood = (
        "import asyncio,sys\n"
        "from websockets.asyncio.client import connect\n"
        "async def one():\n"
        "    async with connect(sys.argv[1]) as ws:\n"
        "        try:\n"
        "            await ws.send('not a hello')\n"
        "        except Exception:\n"
        "            pass\n"
        "        return await ws.recv()\n"
        "async def main():\n"
        "    got = await asyncio.gather(*(one() for _ in range(40)))\n"
        "    print(sum('too many' in g for g in got))\n"
        "asyncio.run(main())\n"
    )
    url = api.url.replace("http", "ws") + "/v1/card-sync"
    done = HERE.run([PY, "-c", flood, url], timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 30  # the bucket holds 6
    # A host refused for it is told why, not that the server is unreachable.
    code, out = coap_open(HERE, "--sync", "--card", str(card))
    assert code == 8 and "too many syncs" in out["message"], out
