"""The key host's hold on a card behind the real pcscd and vpcd, while an Open runs.

Two things a phone or PC can do to a card under ``coap-open``: take it away (the
card pulled, the reader or pcscd gone), and talk to it from another program at
the same time. The first must end in the key host's own "card" answer, never a
traceback; the second must not let the other program use what ``coap-open``
set up on the card (the PIN verification is for the Open that asked for it).
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.apdu import encode_command
from elock_testkit.cardproc import COAP_OPEN, ServedCard, env, make_card
from elock_testkit.lockproc import Key
from elock_testkit.pcsc import READER, CardConnection, wait_for_card
from elock_testkit.procs import terminate
from key_client.cards import connect

pytestmark = pytest.mark.peer

PIN = "2468"


@pytest.fixture
def silent_lock() -> Iterator[socket.socket]:
    """A UDP port on loopback that takes the card's datagrams and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(20)
    try:
        yield sock
    finally:
        sock.close()


def _key(n: int) -> Key:
    return Key(f"ID-{n}-" + "A" * 24, f"PSK-{n}-" + "B" * 10, f"k{n}")


def test_a_card_pulled_during_an_open_is_a_card_problem_not_a_traceback(
    tmp_path: Path, silent_lock: socket.socket
) -> None:
    port = silent_lock.getsockname()[1]
    card = make_card(tmp_path, [("Door", f"coaps://127.0.0.1:{port}/lock", _key(1))])
    served = ServedCard(card)
    try:
        proc = subprocess.Popen(
            [*COAP_OPEN, "--json", "--reader", READER, "--timeout", "15", "--retransmit-ms", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
        )  # fmt: skip
        try:
            silent_lock.recv(4096)  # the ClientHello: the Open is running in the card
            terminate(served.proc)  # the card leaves the reader
            wait_for_card(READER, present=False)
            out, err = proc.communicate(timeout=30)
        finally:
            terminate(proc)
    finally:
        served.stop()
    assert "Traceback" not in err, err
    body = json.loads(out.strip().splitlines()[-1])
    assert (proc.returncode, body["status"]) == (5, "card"), (out, err)


def test_another_program_cannot_spend_the_pin_verified_for_an_open(tmp_path: Path) -> None:
    """coap-open verified the PIN for "Front"; a program beside it must not open "Back" with it."""
    keys = [
        ("Front", "coaps://127.0.0.1:9/lock", _key(1)),
        ("Back", "coaps://127.0.0.1:9/b", _key(2)),
    ]
    card = make_card(tmp_path, keys, pin=PIN)
    served = ServedCard(card)
    try:
        channel = connect(reader=READER)
        try:
            channel.verify_pin(PIN)
            stolen = _open_from_another_program(container_id=2)
        finally:
            channel.close()
        assert stolen is None, stolen.hex()  # pcscd kept it out while the key host held the card
        with connect(reader=READER) as again:  # let go: the card is anyone's again
            assert [k.label for k in again.keys()] == ["Front", "Back"]
    finally:
        served.stop()


def _open_from_another_program(container_id: int) -> bytes | None:
    """OPEN through a PC/SC connection of its own; None if pcscd would not let it in."""
    from smartcard.Exceptions import CardConnectionException

    try:
        other = CardConnection(READER)
    except CardConnectionException:
        return None
    with other:
        data = tlv.encode_all([(c.TAG_CONTAINER, bytes([container_id])), (c.TAG_NOW, bytes(8))])
        return other.transmit(encode_command(c.CLA_PROPRIETARY, c.INS_OPEN, 0, 0, data, le=256))
