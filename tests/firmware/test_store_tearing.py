"""Tearing: cut the card's power at every write step of install, delete and PIN updates.

After each cut the card powers up again (journal recovery, RAM lost) and must
hold the old state or the new one: never a broken container, never a PIN try
counter higher than before (a cut must not refund a try).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from elock_common import card_protocol as c
from firmware.apdu import command
from firmware.pin import CELL_TRIES
from firmware.store import Eeprom, PowerCut
from firmware.virtual import host
from tests.firmware.helpers import PIN, Card, container, make_card

State = tuple[tuple[tuple[int, bytes, bytes], ...], int]


def state(card: Card) -> State:
    """What the card holds, read through its own APDUs after power-up."""
    card.power_up().selected()
    listed = host.list_containers(card.tx)
    full = [card.applet.keyring.get(k.container_id) for k in listed]  # parses every cell
    tries = card.eeprom.read(CELL_TRIES)
    return tuple((k.container_id, k.identity, k.psk) for k in full), tries[0] if tries else -1


def clone(card: Card) -> Card:
    copy = Card(Eeprom(dict(card.eeprom.cells)), card.applet, card.transport_key)
    return copy.power_up().selected()


def sweep(base: Card, action: Callable[[Card], object], tear: bool) -> list[State]:
    """Run *action* on copies of *base*, cutting power at step 0, 1, 2 ... until it completes."""
    results = []
    for cut in range(200):
        card = clone(base)
        card.eeprom.cut_at, card.eeprom.tear = card.eeprom.steps + cut, tear
        try:
            action(card)
            completed = True
        except PowerCut:
            completed = False
        results.append(state(card))
        if completed:
            return results
    raise AssertionError("the action never completed")


def sealed(ins: int, plain: bytes) -> Callable[[Card], object]:
    """The sealed command, with its GET CHALLENGE, as one action."""

    def action(card: Card) -> object:
        if ins == c.INS_PUT_CONTAINER:
            return card.install(container(1))
        if ins == c.INS_DELETE_CONTAINER:
            return host.delete(card.tx, card.transport_key, 1)
        return host.set_pin(card.tx, card.transport_key, b"9876", 5)

    return action


TEARS = pytest.mark.parametrize("tear", [False, True], ids=["lost-write", "torn-write"])


@TEARS
def test_install_is_all_or_nothing(tear: bool) -> None:
    base = make_card(containers=1)
    before = state(clone(base))
    results = sweep(base, sealed(c.INS_PUT_CONTAINER, b""), tear)
    after = results[-1]
    assert len(after[0]) == 2 and before != after
    assert set(results) == {before, after}
    assert len(results) > 5  # the sweep really cut inside the write


@TEARS
def test_replacing_a_container_is_all_or_nothing(tear: bool) -> None:
    base = make_card(containers=2)
    moved = container(1, label="Renamed", container_id=1)  # same key, new id: a move

    def action(card: Card) -> object:
        return card.install(moved)

    results = sweep(base, action, tear)
    before, after = state(clone(base)), results[-1]
    assert set(results) == {before, after}
    assert [k[0] for k in after[0]] == [1]  # key 1 moved over key 0, never held twice


@TEARS
def test_delete_is_all_or_nothing(tear: bool) -> None:
    base = make_card(containers=2)
    results = sweep(base, sealed(c.INS_DELETE_CONTAINER, b""), tear)
    before, after = state(clone(base)), results[-1]
    assert len(after[0]) == 1
    assert set(results) == {before, after}


@TEARS
def test_set_pin_is_all_or_nothing(tear: bool) -> None:
    base = make_card()
    results = sweep(base, sealed(c.INS_SET_PIN, b""), tear)
    assert {r[1] for r in results} == {3, 5}


def verify(pin: bytes) -> Callable[[Card], object]:
    def action(card: Card) -> object:
        return card.tx(command(c.CLA_ISO, c.INS_VERIFY, 0, c.P2_PIN_CARD, pin))

    return action


@TEARS
def test_wrong_pin_cut_never_refunds_a_try(tear: bool) -> None:
    results = sweep(make_card(), verify(b"0000"), tear)
    assert {r[1] for r in results} == {3, 2}
    assert results[-1][1] == 2


@TEARS
def test_right_pin_cut_leaves_counter_old_or_lower(tear: bool) -> None:
    base = make_card()
    assert verify(b"0000")(base) == b"\x63\xc2"
    results = sweep(base, verify(PIN), tear)
    assert {r[1] for r in results[:-1]} == {2, 1}  # a cut mid-verify costs the spent try
    assert results[-1][1] == 3  # success restores the limit
