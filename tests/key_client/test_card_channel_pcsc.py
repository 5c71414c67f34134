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

from elock_testkit.cardproc import COAP_OPEN, ServedCard, env, make_card
from elock_testkit.lockproc import Key
from elock_testkit.pcsc import READER, wait_for_card
from elock_testkit.procs import terminate

pytestmark = pytest.mark.peer


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
