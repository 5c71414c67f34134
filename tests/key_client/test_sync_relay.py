"""The key host's side of a sync without a network: what it relays, what it refuses."""

from __future__ import annotations

import pytest

from elock_common import card_protocol as c
from elock_common import card_sync as wire
from firmware.applet import Applet
from firmware.store import Eeprom, Store
from key_client.errors import SyncError
from key_client.sync import SyncRelay, sync_url

SELECT = bytes([0, c.INS_SELECT, 4, 0, len(c.AID)]) + c.AID


def test_the_sync_url_follows_the_card_url() -> None:
    assert sync_url("https://keys.example.org") == "wss://keys.example.org/v1/card-sync"
    assert sync_url("http://127.0.0.1:8080/elock/") == "ws://127.0.0.1:8080/elock/v1/card-sync"
    with pytest.raises(SyncError, match="not http"):
        sync_url("ftp://keys.example.org")


def test_a_script_runs_on_the_card_and_answers_come_back_whole() -> None:
    applet = Applet(Store(Eeprom()))
    relay = SyncRelay(applet.process)
    message = relay.receive(wire.encode(wire.Apdus((SELECT, bytes.fromhex("00CA7F2100")))))
    assert isinstance(message, wire.Apdus)
    answers = wire.decode_host_message(relay.run_script(message))
    assert isinstance(answers, wire.Answers)
    assert answers.responses == (b"\x90\x00", bytes.fromhex("6A88"))  # no certificate here


@pytest.mark.parametrize(
    "apdu", [bytes.fromhex("0020008104") + b"1234", bytes.fromhex("80320000"), b"\x84\xe2\x00\x00"]
)
def test_a_key_server_cannot_make_the_host_try_a_pin_or_open(apdu: bytes) -> None:
    tried: list[bytes] = []
    relay = SyncRelay(lambda a: tried.append(a) or b"\x90\x00")
    with pytest.raises(SyncError, match="refused"):
        relay.receive(wire.encode(wire.Apdus((SELECT, apdu))))
    assert tried == []  # not even the allowed SELECT before it went to the card


def test_refusals_and_malformed_frames_are_sync_errors_with_their_reason() -> None:
    relay = SyncRelay(lambda a: b"\x90\x00")
    with pytest.raises(SyncError, match="too many syncs"):
        relay.receive(wire.encode(wire.Refused("too many syncs", 30)))
    with pytest.raises(SyncError, match="malformed"):
        relay.receive('{"msg": "apdus"}')
    relay.receive(wire.encode(wire.Outcome(1, 0, 0, "")))
    assert relay.result is not None and relay.result.message == "1 key(s) added, 0 removed"
