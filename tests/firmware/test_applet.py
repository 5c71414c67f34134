"""The applet core: SELECT, dispatch, LIST, response chaining, and what must never leak."""

from __future__ import annotations

import logging

import pytest

from elock_common import card_protocol as c
from elock_common.container import Flags, KeyContainer, parse_list
from elock_common.errors import FormatError
from firmware.apdu import command
from firmware.applet import Applet
from firmware.dispatch import Registry, Route, route
from firmware.store import Eeprom, Store
from firmware.virtual import host
from tests.firmware.helpers import PSKS, SELECT, container, make_card

LIST = command(c.CLA_PROPRIETARY, c.INS_LIST, le=256)


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def test_unselected_card_only_answers_select() -> None:
    applet = Applet(Store(Eeprom()))
    assert sw(applet.process(LIST)) == 0x6985
    assert sw(applet.process(command(0, c.INS_GET_RESPONSE, le=16))) == 0x6985
    assert sw(applet.process(SELECT)) == 0x9000
    assert applet.process(LIST) == b"\x90\x00"  # no containers: no data


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        (command(0, c.INS_SELECT, 0x04, 0x00, bytes.fromhex("A0000000041010")), 0x6A82),
        (command(0, c.INS_SELECT, 0x00, 0x00, c.AID), 0x6A86),
        (command(0, c.INS_SELECT, 0x04, 0x02, c.AID), 0x6A86),
        (command(0, c.INS_SELECT, 0x04, 0x0C, c.AID), 0x9000),
        (command(0, c.INS_SELECT, 0x04, 0x00, c.AID, le=256), 0x9000),
        (command(0xB0, c.INS_LIST), 0x6E00),
        (command(0x80, 0x50), 0x6D00),
        (command(0x00, 0x50), 0x6D00),
        (command(0x80, c.INS_LIST, 1, 0), 0x6A86),
        (command(0x80, c.INS_LIST, 0, 0, b"x"), 0x6700),
        (b"\x80\x30", 0x6700),
        (b"\x80\x30\x00\x00\x02\x00", 0x6700),
    ],
)
def test_status_words(apdu: bytes, expected: int) -> None:
    card = make_card()
    assert sw(card.tx(apdu)) == expected


def test_failed_select_keeps_the_selection() -> None:
    card = make_card(containers=1)
    assert sw(card.tx(command(0, c.INS_SELECT, 4, 0, b"\xa0\x00"))) == 0x6A82
    assert sw(card.tx(LIST)) == 0x9000


def test_list_shows_everything_but_the_psk() -> None:
    card = make_card(containers=3)
    data = card.tx(LIST)[:-2]
    listed = parse_list(data)
    assert [k.container_id for k in listed] == [1, 2, 3]
    assert [k.label for k in listed] == ["Door 0", "Door 1", "Door 2"]
    assert listed[1].uri == "coaps://127.0.0.1:5685/open"
    assert all(k.psk == b"-" for k in listed)
    for psk in PSKS:
        assert psk not in data


def test_long_list_is_chained_with_get_response() -> None:
    card = make_card()
    for n in range(12):
        card.install(container(n, label="L" * 32, uri="coaps://" + "h" * 100 + f"/{n}"))
    first = card.tx(command(c.CLA_PROPRIETARY, c.INS_LIST, le=256))
    assert len(first) == 258 and first[-2] == 0x61
    body = first[:-2]
    response = first
    while response[-2] == 0x61:
        response = card.tx(command(0, c.INS_GET_RESPONSE, le=response[-1] or 256))
        body += response[:-2]
    assert sw(response) == 0x9000 and len(parse_list(body)) == 12
    assert sw(card.tx(command(0, c.INS_GET_RESPONSE, le=16))) == 0x6985  # nothing left
    # Extended Le takes it in one go; case 1 with data to return gives 61xx at once.
    whole = card.tx(command(c.CLA_PROPRIETARY, c.INS_LIST, le=4096))
    assert sw(whole) == 0x9000 and whole[:-2] == body
    assert card.tx(command(c.CLA_PROPRIETARY, c.INS_LIST))[-2] == 0x61
    assert host.list_containers(card.tx) == parse_list(body)


def test_any_other_command_drops_a_pending_response() -> None:
    card = make_card(containers=2)
    assert card.tx(command(c.CLA_PROPRIETARY, c.INS_LIST, le=8))[-2] == 0x61
    assert sw(card.tx(SELECT)) == 0x9000
    assert sw(card.tx(command(0, c.INS_GET_RESPONSE, le=16))) == 0x6985
    assert sw(card.tx(command(0, c.INS_GET_RESPONSE, 0, 1, le=16))) == 0x6A86
    assert sw(card.tx(command(0, c.INS_GET_RESPONSE))) == 0x6700


def test_reset_clears_ram_state() -> None:
    card = make_card(containers=1)
    card.applet.reset()
    assert sw(card.tx(LIST)) == 0x6985


def test_registry_refuses_duplicates() -> None:
    registry = Registry()
    registry.add(route(0x80, 0x30, "A", lambda cmd: b"", (), "x"))
    with pytest.raises(ValueError, match="both claim"):
        registry.add(route(0x80, 0x30, "B", lambda cmd: b"", (), "x"))


def test_every_route_declares_its_status_words() -> None:
    applet = Applet(Store(Eeprom()))
    names = {r.name for r in applet.registry}
    assert names >= {"SELECT", "LIST", "OPEN", "VERIFY", "PUT CONTAINER", "GET RESPONSE"}
    for r in applet.registry:
        assert r.spec and r.declares(0x9000) and r.declares(0x6700)


def test_internal_error_becomes_6f00_and_is_logged_without_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    card = make_card(containers=1)

    def broken(cmd: object) -> bytes:
        raise RuntimeError(PSKS[0].decode())

    card.applet.registry._routes[(0x80, c.INS_LIST)] = route(0x80, c.INS_LIST, "X", broken, (), "")
    with caplog.at_level(logging.DEBUG):
        assert card.tx(LIST) == b"\x6f\x00"
    assert "RuntimeError" in caplog.text and PSKS[0].decode() not in caplog.text


def test_container_validation_and_reprs() -> None:
    k = container(0)
    assert PSKS[0].decode() not in repr(k)
    assert KeyContainer.from_tlv(k.to_tlv()) == k
    assert b"\x84" + bytes([len(k.psk)]) + k.psk not in k.public_tlv()
    for bad in (
        {"identity": b"x" * 33},
        {"identity": b"bad\nid"},
        {"psk": b""},
        {"psk": "é".encode()},
        {"uri": "coap://plain/open"},
        {"label": "x" * 33},
        {"not_before": 10, "not_after": 5},
        {"flags": Flags(0x80)},
        {"container_id": 17},
    ):
        with pytest.raises(FormatError):
            container(0, **bad)
    with pytest.raises(FormatError):
        KeyContainer.from_tlv(k.to_tlv() + k.to_tlv()[:3])  # repeated tag
    with pytest.raises(FormatError):
        KeyContainer.from_tlv(b"\x81\x01\xff")
    assert "Applet(" in repr(make_card().applet) and "1234" not in repr(make_card().applet)


def test_extensions_plug_in_routes_and_reset() -> None:
    class Echo:
        resets = 0

        def routes(self) -> list[Route]:
            return [route(0x80, 0x70, "ECHO", lambda cmd: cmd.data, (), "test")]

        def reset(self) -> None:
            self.resets += 1

    echo = Echo()
    applet = Applet(Store(Eeprom()), extensions=[echo])
    assert applet.process(SELECT) == b"\x90\x00" and echo.resets == 1
    assert applet.process(command(0x80, 0x70, data=b"hi", le=256)) == b"hi\x90\x00"
    with pytest.raises(ValueError):
        Applet(Store(Eeprom()), extensions=[echo, echo])  # duplicate routes refused
