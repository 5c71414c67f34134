"""The applet's OPEN against the real lock: our DTLS and CoAP clients inside the card.

The test plays the key host: it carries the card's datagrams to the lock over
UDP and the lock's back, calling TIMER when nothing arrives in time. The lock
is the project's own (tinydtls through DTLSSocket), an implementation we did
not write the DTLS of, so this is interop, not a self-test.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from elock_common import card_protocol as c
from elock_common.container import KeyContainer
from elock_testkit.lockproc import LockProcess
from firmware.applet import Applet
from firmware.personalization import CELL_TRANSPORT_KEY
from firmware.store import Eeprom, Store
from firmware.virtual import host
from tests.firmware.helpers import SELECT


def carry(transmit: host.Transmit, container_id: int, uri: str) -> tuple[host.OpenStep, int]:
    """The key host's loop; returns the final step and the number of APDU exchanges."""
    parts = urlsplit(uri)
    peer = (parts.hostname or "", parts.port or 5684)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        step, exchanges = host.open_begin(transmit, container_id), 1
        deadline = time.monotonic() + 30
        while step.state == c.STATE_RUNNING and time.monotonic() < deadline:
            for datagram in step.datagrams:
                sock.sendto(datagram, peer)
            sock.settimeout(max(step.timer_ms or 1000, 1) / 1000)
            received = []
            try:
                received.append(sock.recv(4096))
                sock.settimeout(0.02)  # gather the rest of the flight
                while len(received) < 8:
                    received.append(sock.recv(4096))
            except TimeoutError:
                pass
            step = (
                host.open_datagrams(transmit, received) if received else host.open_timer(transmit)
            )
            exchanges += 1
        for datagram in step.datagrams:  # close_notify
            sock.sendto(datagram, peer)
    return step, exchanges


@pytest.mark.peer
def test_card_opens_the_real_lock(lock: LockProcess) -> None:
    key = lock.mint()
    store = Store(Eeprom())
    with store.transaction() as tx:
        tx.put(CELL_TRANSPORT_KEY, bytes(32))
    applet = Applet(store)
    assert applet.process(SELECT) == b"\x90\x00"
    k = KeyContainer(0, "Test lock", lock.uri, key.identity.encode(), key.psk.encode())
    cid = host.install(applet.process, bytes(32), k)
    step, exchanges = carry(applet.process, cid, lock.uri)
    assert (step.state, step.code_string) == (c.STATE_DONE, "2.04"), step.reason
    assert exchanges <= 5
    assert "on" in lock.relay_events()  # the strike was energised


@pytest.mark.peer
def test_card_reports_a_refusal(lock: LockProcess) -> None:
    key = lock.mint("--not-before", "1000000000", "--not-after", "1000000001")
    store = Store(Eeprom())
    applet = Applet(store)
    applet.process(SELECT)
    applet.keyring.put(KeyContainer(0, "Old", lock.uri, key.identity.encode(), key.psk.encode()))
    step, _ = carry(applet.process, 1, lock.uri)
    assert step.state == c.STATE_DONE and step.code_string in ("4.01", "4.03")
    assert step.payload  # the lock says why
