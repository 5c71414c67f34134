"""Issue 13's proof: a card behind a home NAT gets its keys because its host dials out.

Key server (and a tap that logs the host's traffic) in a "cloud" namespace;
the key host, its card and the lock in a "home" namespace behind an nftables
masquerade that drops every connection the cloud opens (``tests.netns``).
Everything is the program a user runs: ``elock-keyserver serve``, ``elock-se
personalize --key-server``, ``elock-lock``, ``coap-open --sync`` / ``--list`` /
open. The story: the cloud cannot reach home; issue a key, sync at home, it is
``installed`` and opens the lock; revoke, sync, the container is gone and the
push ``removed``. Again with the card behind the real pcscd (``elock-se
serve``), and with the link cut in the middle of a sync (the next one
finishes). The tap's log must hold no byte of a PSK, identity or label in
clear, in the raw stream nor in the WebSocket payloads unmasked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from elock_common import pki
from elock_testkit.liveserver import env
from elock_testkit.pcsc import READER, Pcscd, wait_for_card
from tests.netns import CLOUD_IP, HOME_IP, NatNetwork, nat_network
from tests.network.test_netns import CONNECT, LISTEN
from tests.sync.stack import (
    PY,
    KeyServer,
    Place,
    coap_open,
    enrol_lock,
    personalize_card,
    start,
    start_keyserver,
)
from tests.sync.tap import read_log, websocket_payloads

pytestmark = pytest.mark.peer
SEID = "phone-0001"
KS_PORT, TAP_PORT, LOCK_PORT = 8080, 8443, 5684


@dataclass
class Field:
    net: NatNetwork
    home: Place
    cloud: Place
    api: KeyServer
    card: Path
    lock_id: str
    se_id: str
    tap_log: Path

    def spawn(self, place: Place, args: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        host = self.net.home if place is self.home else self.net.cloud
        return self.net.spawn(host, args, log=log, env=env())


def _field(net: NatNetwork, tmp_path: Path, *, cut_at: str | None) -> Field:
    home, cloud = Place(net.home.exec_args([])), Place(net.cloud.exec_args([]))
    f = Field(net, home, cloud, None, Path(), "", "", tmp_path / "tap.bin")  # type: ignore[arg-type]
    paths = pki.init_pki(tmp_path / "pki")
    f.api = start_keyserver(f.spawn, cloud, tmp_path / "ks", paths, listen="0.0.0.0",
                            port=KS_PORT)  # fmt: skip
    tap = [PY, "-m", "tests.sync.tap", "--listen", f"0.0.0.0:{TAP_PORT}",
           "--to", f"127.0.0.1:{KS_PORT}", "--log", str(f.tap_log)]  # fmt: skip
    start(f.spawn, cloud, [*tap, *(["--cut-at", cut_at] if cut_at else [])],
          tmp_path / "tap.log", "ready")  # fmt: skip
    f.card = personalize_card(tmp_path, paths, SEID, f"http://{CLOUD_IP}:{TAP_PORT}")
    f.lock_id, _ = enrol_lock(f.spawn, home, f.api, tmp_path, LOCK_PORT)
    f.se_id = f.api.ok("POST", "/secure-elements", {"seid": SEID, "label": "Ann's phone"}, 201)[
        "id"
    ]
    return f


@pytest.fixture
def field(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Field]:
    with nat_network() as net:
        yield _field(net, tmp_path, cut_at=getattr(request, "param", None))


def _cloud_cannot_connect_home(f: Field) -> None:
    listener = f.net.spawn(f.net.home, [PY, "-c", LISTEN])
    try:
        done = f.cloud.run([PY, "-c", CONNECT, HOME_IP], timeout=30)
        assert done.stdout.strip() == "failed TimeoutError", done
    finally:
        listener.kill()


def _issue(f: Field, label: str) -> Any:
    body = {"lock_id": f.lock_id, "secure_element_id": f.se_id, "label": label}
    return f.api.ok("POST", "/keys", body, 201)


def _push(f: Field, key: Any) -> Any:
    return f.api.ok("GET", f"/keys/{key['id']}")["push"]


def _sync(f: Field, card_args: list[str]) -> tuple[int, Any]:
    return coap_open(f.home, "--sync", "--timeout", "30", *card_args)


def _story(f: Field, card_args: list[str]) -> list[Any]:
    """Issue, sync, open, revoke, sync: the keys issued (with their PSKs), for the traffic check."""
    _cloud_cannot_connect_home(f)
    key = _issue(f, "Zq7 front door")
    assert _push(f, key)["state"] == "pending"
    code, out = _sync(f, card_args)
    assert (code, out["added"], out["removed"]) == (0, 1, 0), out
    assert _push(f, key)["state"] == "installed"
    code, out = coap_open(f.home, *card_args, "Zq7 front door")
    assert (code, out["status"]) == (0, "opened"), out

    f.api.ok("POST", f"/keys/{key['id']}/revoke", {"reason": "phone lost"})
    assert _push(f, key)["state"] == "removing"  # until the card syncs
    code, out = _sync(f, card_args)
    assert (code, out["added"], out["removed"]) == (0, 0, 1), out
    assert _push(f, key)["state"] == "removed"
    assert coap_open(f.home, "--list", *card_args) == (0, [])
    return [key]


def _no_secret_in_clear(tap_log: Path, keys: list[Any]) -> None:
    chunks = read_log(tap_log)
    streams = {way: b"".join(d for w, d in chunks if w == way) for way in "><"}
    seen = [*streams.values()]
    for stream in streams.values():
        for payload in websocket_payloads(stream):
            seen.append(payload)
            try:
                body = json.loads(payload)
            except ValueError:
                continue
            for item in body.get("apdus", []) + body.get("responses", []):
                seen.append(bytes.fromhex(item))
    assert any(b'"msg":"apdus"' in s for s in seen)  # the frames were read, unmasked
    for key in keys:
        for secret in (key["psk"], key["identity"], key["label"]):
            for form in (secret.encode(), secret.encode().hex().encode()):
                assert not any(form in s for s in seen), f"{secret!r} crossed in clear"


def test_a_card_file_at_home_syncs_through_the_nat(field: Field) -> None:
    keys = _story(field, ["--card", str(field.card)])
    _no_secret_in_clear(field.tap_log, keys)


def test_a_card_behind_pcscd_at_home_syncs(field: Field, tmp_path: Path) -> None:
    daemon = Pcscd.start()
    served = None
    try:
        served = subprocess.Popen(
            [sys.executable, "-m", "firmware.virtual.cli", "serve", "--card", str(field.card)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
        )  # fmt: skip
        wait_for_card(READER)
        keys = _story(field, ["--reader", READER])
    finally:
        if served is not None:
            served.terminate()
            served.wait(15)
        daemon.stop()
    _no_secret_in_clear(field.tap_log, keys)


@pytest.mark.parametrize("field", ["updating"], indirect=True)
def test_a_sync_cut_in_the_middle_is_finished_by_the_next(field: Field) -> None:
    card = ["--card", str(field.card)]
    key = _issue(field, "Zq7 back door")
    code, out = _sync(field, card)  # the tap drops the card's answer to the install and cuts
    assert code == 8 and out["status"] == "sync", out
    push = _push(field, key)
    assert push["state"] == "pending" and "host sync" in push["last_error"], push
    # The card applied the install whole; the server did not hear it: the next sync finishes.
    code, listed = coap_open(field.home, "--list", *card)
    assert code == 0 and [k["label"] for k in listed] == ["Zq7 back door"]
    code, out = _sync(field, card)
    assert (code, out["added"]) == (0, 1), out
    push = _push(field, key)
    assert push["state"] == "installed" and push["last_error"] is None, push
    code, out = coap_open(field.home, *card, "Zq7 back door")
    assert (code, out["status"]) == (0, "opened"), out
    _no_secret_in_clear(field.tap_log, [key])
