"""OPEN, DATAGRAMS, TIMER, CLOSE around a scripted session: the APDU adapter's contract."""

from __future__ import annotations

import pytest

from elock_common import card_protocol as c
from elock_common import tlv
from firmware.apdu import command
from firmware.opening import MAX_EXCHANGES, coap_code_byte
from firmware.virtual import host
from tests.firmware.helpers import NOW_MS, FakeSession, container, make_card


def card_error(call: object) -> int:
    assert callable(call)
    with pytest.raises(host.CardError) as info:
        call()
    return info.value.sw


def test_open_runs_to_a_coap_result() -> None:
    card = make_card(containers=1)
    step = host.open_begin(card.tx, 1, NOW_MS)
    assert (step.state, step.datagrams, step.timer_ms) == (c.STATE_RUNNING, [b"client-hello"], 1000)
    session = card.applet.opener.session
    assert isinstance(session, FakeSession) and session.container.psk == container(0).psk
    step = host.open_datagrams(card.tx, [b"hvr", b"second"], NOW_MS + 10)
    assert step.datagrams == [b"re:hvr", b"re:second"] and step.timer_ms == 1000
    step = host.open_datagrams(card.tx, [b"done"], NOW_MS + 20)
    assert (step.state, step.code_string, step.payload) == (c.STATE_DONE, "2.04", b"opened")
    assert step.timer_ms is None and card.applet.opener.session is None
    assert card_error(lambda: host.open_timer(card.tx, NOW_MS)) == 0x6985


def test_timer_retransmits_only_when_due() -> None:
    card = make_card(containers=1)
    host.open_begin(card.tx, 1, NOW_MS)
    session = card.applet.opener.session
    assert isinstance(session, FakeSession)
    early = host.open_timer(card.tx, NOW_MS + 500)
    assert early.datagrams == [] and early.timer_ms == 500 and session.timer_fired == 0
    late = host.open_timer(card.tx, NOW_MS + 1000)
    assert late.datagrams == [b"client-hello"] and session.timer_fired == 1
    # DATAGRAMS with nothing received also lets time pass.
    assert host.open_datagrams(card.tx, [], NOW_MS + 2500).datagrams == [b"client-hello"]


def test_failure_event_ends_the_open_with_reason_and_alert() -> None:
    card = make_card(containers=1)
    host.open_begin(card.tx, 1, NOW_MS)
    step = host.open_datagrams(card.tx, [b"fail"], NOW_MS)
    assert step.state == c.STATE_FAILED and step.alert == 20
    assert step.reason.startswith("handshake failed") and card.applet.opener.session is None


def test_a_session_bug_ends_the_open_not_the_card() -> None:
    card = make_card(containers=1)
    host.open_begin(card.tx, 1, NOW_MS)
    step = host.open_datagrams(card.tx, [b"boom"], NOW_MS)
    assert (step.state, step.reason) == (c.STATE_FAILED, "internal")
    assert host.list_containers(card.tx)  # the card still works


def test_exchanges_are_bounded() -> None:
    card = make_card(containers=1)
    host.open_begin(card.tx, 1, NOW_MS)
    for i in range(MAX_EXCHANGES - 2):
        assert host.open_datagrams(card.tx, [b"x"], NOW_MS + i).state == c.STATE_RUNNING
    step = host.open_datagrams(card.tx, [b"x"], NOW_MS)
    assert (step.state, step.reason) == (c.STATE_FAILED, "too many exchanges")


def test_open_refusals() -> None:
    card = make_card(containers=1)
    assert card_error(lambda: host.open_begin(card.tx, 5, NOW_MS)) == 0x6A82
    assert card_error(lambda: host.open_datagrams(card.tx, [b"x"], NOW_MS)) == 0x6985
    card.install(container(1, not_before=2_000_000_000))
    card.install(container(2, not_after=1_000_000_000))
    assert card_error(lambda: host.open_begin(card.tx, 2, NOW_MS)) == 0x6985  # not yet
    assert card_error(lambda: host.open_begin(card.tx, 3, NOW_MS)) == 0x6985  # expired
    now = tlv.encode(c.TAG_NOW, NOW_MS.to_bytes(8, "big"))
    bad = [
        (command(0x80, c.INS_OPEN, 0, 1, b"\x91\x01\x01" + now), 0x6A86),
        (command(0x80, c.INS_OPEN, 0, 0, b"\x91\x01\x01"), 0x6A80),  # no time
        (command(0x80, c.INS_OPEN, 0, 0, b"\x91\x02\x00\x01" + now), 0x6A80),
        (command(0x80, c.INS_OPEN, 0, 0, b"\x90\x02\x00\x01\x91\x01\x01"), 0x6A80),
        (command(0x80, c.INS_OPEN, 0, 0, b"\x91\x01\x01" + now + b"\x77\x00"), 0x6A80),
        (command(0x80, c.INS_OPEN, 0, 0, b"\x91\x01\x01\x90\x08" + b"\xff" * 8), 0x6A80),
        (command(0x80, c.INS_CLOSE, 0, 0, b"x"), 0x6700),
    ]
    for apdu, expected in bad:
        assert card.tx(apdu)[-2:] == expected.to_bytes(2, "big"), apdu.hex()
    host.open_begin(card.tx, 1, NOW_MS)
    many = now + b"".join(tlv.encode(c.TAG_DATAGRAM_IN, b"d") for _ in range(9))
    assert card.tx(command(0x80, c.INS_DATAGRAMS, 0, 0, many, le=256)) == b"\x67\x00"
    assert card.tx(command(0x80, c.INS_CLOSE)) == b"\x90\x00"
    assert card.applet.opener.session is None


def test_select_or_a_new_open_abandons_the_running_one() -> None:
    card = make_card(containers=2)
    host.open_begin(card.tx, 1, NOW_MS)
    first = card.applet.opener.session
    host.open_begin(card.tx, 2, NOW_MS)
    assert card.applet.opener.session is not first
    card.selected()
    assert card.applet.opener.session is None


def test_coap_code_byte() -> None:
    assert coap_code_byte("2.04") == 0x44 and coap_code_byte("4.03") == 0x83
    with pytest.raises(ValueError):
        coap_code_byte("8.00")
