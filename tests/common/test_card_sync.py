"""Card-sync messages: each round-trips; malformed, oversized or forbidden ones are refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elock_common import card_protocol as c
from elock_common import card_sync as wire

SELECT = bytes([0, c.INS_SELECT, 4, 0, len(c.AID)]) + c.AID


@pytest.mark.parametrize(
    "message",
    [wire.Apdus((SELECT, b"\x00\xd8\x00\x03\x01\x16\x00")), wire.Progress("checking the card"),
     wire.Outcome(1, 2, 1, "the card refused"), wire.Refused("too many syncs", 30)],
)  # fmt: skip
def test_server_messages_round_trip(message: wire.ServerMessage) -> None:
    assert wire.decode_server_message(wire.encode(message)) == message


@pytest.mark.parametrize("message", [wire.Hello(), wire.Answers((b"\x90\x00", b"ab\x90\x01"))])
def test_host_messages_round_trip(message: wire.HostMessage) -> None:
    assert wire.decode_host_message(wire.encode(message)) == message


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"msg": "apdus", "apdus": ["zz"]}', "not hex"),
        ('{"msg": "apdus", "apdus": "00a4"}', "list"),
        ('{"msg": "apdus", "apdus": [], "more": 1}', "unexpected"),
        ('{"msg": "outcome", "added": -1, "removed": 0, "failed": 0, "reason": ""}', "0..1000"),
        ('{"msg": "outcome", "added": true, "removed": 0, "failed": 0, "reason": ""}', "integer"),
        ('{"msg": "progress", "stage": "a\\nb"}', "printable"),
        ('{"msg": "hello", "version": 1}', "not a server message"),
        (json.dumps({"msg": "apdus", "apdus": ["00"] * 33}), "at most 32"),
        ("x" * (wire.MAX_MESSAGE + 1), "over"),
    ],
)
def test_malformed_server_messages_are_refused(frame: str, why: str) -> None:
    with pytest.raises(wire.SyncFormatError, match=why):
        wire.decode_server_message(frame)


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_only_our_error_escapes(frame: str | bytes) -> None:
    for decode in (wire.decode_host_message, wire.decode_server_message):
        try:
            decode(frame)
        except wire.SyncFormatError:
            pass


@pytest.mark.parametrize(
    ("apdu", "allowed"),
    [
        (SELECT, True),
        (bytes([0, c.INS_SELECT, 4, 0, 5]) + b"OTHER", False),  # another applet
        (bytes.fromhex("00CA7F2100"), True),
        (bytes.fromhex("00CA00FF00"), False),
        (bytes.fromhex("00D8000000"), True),
        (bytes.fromhex("0020008104") + b"1234", False),  # VERIFY: a PIN try
        (bytes.fromhex("8032000000"), False),  # OPEN
        (bytes.fromhex("84E2000000"), False),  # a sealed command
        (bytes.fromhex("00C0000000"), False),  # GET RESPONSE: the host chains itself
        (b"\x00", False),
    ],
)
def test_the_host_relays_only_tls2_and_its_preliminaries(apdu: bytes, allowed: bool) -> None:
    assert wire.relay_allowed(apdu) is allowed
