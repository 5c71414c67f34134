"""``coap-open`` through the real pcscd and the virtual card, against the real lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elock_testkit.cardproc import ServedCard, coap_open, make_card
from elock_testkit.lockproc import Key, LockProcess, coap, free_udp_port
from elock_testkit.pcsc import READER
from tests.conftest import require_tool

# Real peers (libcoap, pcscd, Chromium, systemd-analyze...): not in the fast run.
pytestmark = pytest.mark.peer


def test_opens_through_pcscd_and_refuses_after_revocation(
    lock: LockProcess, tmp_path: Path
) -> None:
    key = lock.mint()
    card = make_card(tmp_path, [("Front door", lock.uri, key)])
    served = ServedCard(card)
    try:
        status, body, _ = coap_open("--reader", READER, "--list")
        assert status == 0 and [k["label"] for k in body] == ["Front door"]  # type: ignore[union-attr]
        assert "psk" not in json.dumps(body).lower() and key.psk not in json.dumps(body)

        status, body, _ = coap_open("--reader", READER, "Front door")
        assert status == 0 and body["status"] == "opened", body
        assert body["apdu_exchanges"] <= 5  # type: ignore[operator]
        assert lock.relay_events().count("on") == 1

        admin = lock.mint("--admin", "--no-open")
        revoke = json.dumps({"version": 1, "revoked": [key.key_id]})
        coap("coap-client-openssl", "post", admin, lock.uri.replace("/lock", "/admin/revocations"),
             payload=revoke)  # fmt: skip
        status, body, _ = coap_open("--reader", READER)
        assert status == 3 and body["status"] == "refused", body
        assert "key revoked" in str(body["message"])
        assert lock.relay_events().count("on") == 1
    finally:
        served.stop()


def test_in_process_card_opens_too(lock: LockProcess, tmp_path: Path) -> None:
    card = make_card(tmp_path, [("Front door", lock.uri, lock.mint())])
    status, body, _ = coap_open("--card", str(card))
    assert status == 0 and body["status"] == "opened", body
    assert lock.relay_on()


def test_unreachable_lock_fails_within_the_timeout(tmp_path: Path) -> None:
    nobody = f"coaps://127.0.0.1:{free_udp_port()}/lock"
    card = make_card(tmp_path, [("Nowhere", nobody, Key("A" * 32, "B" * 16, "x"))])
    status, body, elapsed = coap_open("--card", str(card), "--timeout", "3")
    assert status == 4 and body["status"] == "unreachable", body
    assert elapsed < 3 + 4  # the timeout, plus starting Python twice


def test_card_problems_have_their_own_status(tmp_path: Path) -> None:
    status, body, _ = coap_open("--card", str(tmp_path / "missing.json"))
    assert status == 5 and body["status"] == "card", body
    card = make_card(
        tmp_path,
        [
            ("A", "coaps://127.0.0.1:1/lock", Key("A" * 32, "B" * 16, "x")),
            ("B", "coaps://127.0.0.1:2/lock", Key("C" * 32, "D" * 16, "y")),
        ],
    )
    status, body, _ = coap_open("--card", str(card))
    assert status == 6 and "2 keys" in str(body["message"])
    status, body, _ = coap_open("--card", str(card), "Z")
    assert status == 6


@pytest.mark.parametrize("server", ["coap-server-openssl", "coap-server-gnutls"])
def test_applet_speaks_with_libcoap_servers_through_pcscd(server: str, tmp_path: Path) -> None:
    """The card's DTLS and CoAP, through PC/SC, against stacks we did not write."""
    import subprocess

    exe = require_tool(server)
    key = Key("AdljAQIDBAWgAAAAAP____8BfwAABaAA", "UtkhcSpGPbuZIhQX", "x")
    port = free_udp_port()  # libcoap serves coaps on port + 1
    proc = subprocess.Popen([exe, "-A", "127.0.0.1", "-p", str(port), "-k", key.psk],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    card = make_card(tmp_path, [("libcoap", f"coaps://127.0.0.1:{port + 1}/time", key)])
    served = ServedCard(card)
    try:
        status, body, _ = coap_open("--reader", READER)
        # libcoap's example server does not take POST on /time: the answer is a
        # CoAP 4.05, which proves the handshake and the request went through.
        assert status == 3 and body["status"] == "refused", body
        assert str(body["message"]).startswith("refused by the lock (4.05)"), body
    finally:
        served.stop()
        proc.terminate()
        proc.wait(5)


def test_open_through_twenty_percent_loss_opens_once_per_tap(
    lock: LockProcess, tmp_path: Path
) -> None:
    from elock_testkit.lossy_relay import LossyRelay

    taps, opened = 6, 0
    for seed in range(taps):
        with LossyRelay(("127.0.0.1", lock.port), loss=0.2, seed=seed) as relay:
            directory = tmp_path / f"tap{seed}"
            directory.mkdir()
            card = make_card(
                directory, [("Door", f"coaps://127.0.0.1:{relay.port}/lock", lock.mint())]
            )
            status, body, _ = coap_open("--card", str(card), "--timeout", "40")
            opened += status == 0
            assert status in (0, 4), body
    ons = lock.relay_events().count("on")
    assert opened == taps, f"{opened} of {taps} taps opened"
    assert ons == taps, f"the relay moved {ons} times for {taps} taps"


def test_pin_protected_key(lock: LockProcess, tmp_path: Path) -> None:
    card = make_card(tmp_path, [("Front door", lock.uri, lock.mint())], pin="2468")
    status, body, _ = coap_open("--card", str(card))
    assert status == 5 and "PIN" in str(body["message"]), body
    status, body, _ = coap_open("--card", str(card), pin="1111")
    assert status == 5 and "2 tries left" in str(body["message"]), body
    assert "on" not in lock.relay_events()
    status, body, _ = coap_open("--card", str(card), pin="2468")
    assert status == 0 and body["status"] == "opened", body
    # one verification, one Open: the next Open needs the PIN again
    status, body, _ = coap_open("--card", str(card))
    assert status == 5
    for _ in range(3):
        coap_open("--card", str(card), pin="0000")
    status, body, _ = coap_open("--card", str(card), pin="2468")
    assert status == 5 and "blocked" in str(body["message"]), body
    assert lock.relay_events().count("on") == 1
