"""The card's retransmission timer: the host's hint first, then the round trips it measures.

RFC 6347 4.2.4.1 starts at 1 s for a link nobody knows and lets an implementation
choose; the host knows the link better and says so in OPEN (tag 9A); the card
then times each flight answered without a resend (RFC 6298, Karn's rule).
"""

from __future__ import annotations

import pytest

from elock_common import card_protocol as c
from firmware.applet import Applet
from firmware.dtls.client import DtlsClient
from firmware.dtls.flight import MIN_TIMEOUT, LinkTimer
from firmware.opening import default_session_factory
from firmware.store import Store
from firmware.virtual import host
from tests.firmware.helpers import NOW_MS, container, make_card
from tests.firmware.peers import TinyDtlsServer

IDENTITY = b"card-key-0001"
PSK = b"c2VjcmV0LXBzay0x"


def _answered_at(client: DtlsClient, server: TinyDtlsServer, sent: float, back: float) -> None:
    for datagram in client.datagrams_to_send(sent):
        server.receive(datagram)
    for datagram in server.take():
        client.receive_datagram(datagram, back)


def test_the_first_flight_waits_the_hosts_hint() -> None:
    client = DtlsClient(IDENTITY, PSK, initial_timeout=0.25)
    client.connect(0.0)
    client.datagrams_to_send(0.0)
    assert client.get_timer() == 0.25


def test_a_fast_link_brings_the_timer_down_to_its_floor() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK, initial_timeout=0.25)
    client.connect(0.0)
    _answered_at(client, server, 0.0, 0.004)  # the cookie came back in 4 ms
    client.datagrams_to_send(0.004)
    assert client.retransmission_timeout == MIN_TIMEOUT
    assert client.get_timer() == pytest.approx(0.004 + MIN_TIMEOUT)


def test_a_slow_link_raises_a_hint_that_was_too_short() -> None:
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK, initial_timeout=0.1)
    client.connect(0.0)
    _answered_at(client, server, 0.0, 0.3)  # 300 ms: SRTT + 4 RTTVAR = 900 ms
    assert client.retransmission_timeout == pytest.approx(0.9)


def test_a_resent_flight_gives_no_sample() -> None:
    """Karn: the answer may be to either copy, so it says nothing about the round trip."""
    link = LinkTimer(0.25)
    server = TinyDtlsServer(IDENTITY, PSK)
    client = DtlsClient(IDENTITY, PSK, initial_timeout=0.25)
    client.connect(0.0)
    client.datagrams_to_send(0.0)  # lost
    client.handle_timer(0.25)
    _answered_at(client, server, 0.25, 0.26)
    assert client.retransmission_timeout == link.timeout == 0.25


@pytest.mark.parametrize(
    ("hint", "timer_ms"), [(None, 1000), (250, 250), (10, 100), (65535, 60000)]
)
def test_open_takes_the_hint_within_bounds(hint: int | None, timer_ms: int) -> None:
    card = make_card(containers=0)
    card.applet = Applet(Store(card.eeprom), session_factory=default_session_factory)
    card.selected()
    card.install(container(0))
    step = host.open_begin(card.tx, 1, NOW_MS, retransmit_ms=hint)
    assert (step.state, step.progress, step.timer_ms) == (
        c.STATE_RUNNING,
        c.PROGRESS_NO_ANSWER,
        timer_ms,
    )
