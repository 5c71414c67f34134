"""Sealed personalization: install, delete, set PIN; replay, forgery and idempotence."""

from __future__ import annotations

import secrets

import pytest

from elock_common import card_protocol as c
from firmware.apdu import command
from firmware.personalization import SealingKeys
from firmware.virtual import host
from tests.firmware.helpers import PSKS, container, make_card

CHALLENGE = command(c.CLA_ISO, c.INS_GET_CHALLENGE, le=16)
PUT_HEADER = bytes((c.CLA_SEALED, c.INS_PUT_CONTAINER, 0, 0))


def sealed_put(card_tk: bytes, challenge: bytes, plain: bytes, header: bytes = PUT_HEADER) -> bytes:
    data = SealingKeys(card_tk).seal(challenge, header, plain)
    return command(header[0], header[1], header[2], header[3], data, le=256)


def test_install_is_idempotent_and_ids_are_reused() -> None:
    card = make_card()
    assert card.install(container(0)) == 1
    assert card.install(container(1)) == 2
    assert card.install(container(0)) == 1  # a retry: the same container
    assert card.install(container(0, label="New name")) == 1
    assert [k.label for k in host.list_containers(card.tx)] == ["New name", "Door 1"]
    host.delete(card.tx, card.transport_key, 1)
    assert card.install(container(2)) == 1  # lowest free id
    assert card.install(container(0, container_id=7)) == 7
    with pytest.raises(host.CardError) as info:
        host.delete(card.tx, card.transport_key, 9)
    assert info.value.sw == 0x6A82


def test_the_card_fills_up() -> None:
    card = make_card()
    for n in range(16):
        card.install(container(n, identity=f"ID{n}".encode()))
    with pytest.raises(host.CardError) as info:
        card.install(container(99, identity=b"ID99"))
    assert info.value.sw == 0x6A84


def test_sealed_data_hides_the_psk_and_the_response_is_authenticated() -> None:
    card = make_card()
    challenge = card.tx(CHALLENGE)[:-2]
    apdu = sealed_put(card.transport_key, challenge, container(0).to_tlv())
    assert PSKS[0] not in apdu
    response = card.tx(apdu)
    assert response[-2:] == b"\x90\x00"
    keys = SealingKeys(card.transport_key)
    assert keys.check_response(challenge, PUT_HEADER, response[:-2]) == b"\x01"
    with pytest.raises(ValueError):
        keys.check_response(secrets.token_bytes(16), PUT_HEADER, response[:-2])


def test_replay_forgery_and_missing_challenge_are_refused() -> None:
    card = make_card()
    plain = container(0).to_tlv()
    challenge = card.tx(CHALLENGE)[:-2]
    apdu = sealed_put(card.transport_key, challenge, plain)
    assert card.tx(apdu)[-2:] == b"\x90\x00"
    assert card.tx(apdu) == b"\x69\x85"  # replay: the challenge is spent
    card.tx(CHALLENGE)
    assert card.tx(apdu) == b"\x69\x82"  # replay under a new challenge: MAC fails
    wrong_key = secrets.token_bytes(32)
    challenge = card.tx(CHALLENGE)[:-2]
    assert card.tx(sealed_put(wrong_key, challenge, plain)) == b"\x69\x82"
    challenge = card.tx(CHALLENGE)[:-2]
    tampered = bytearray(sealed_put(card.transport_key, challenge, plain))
    tampered[10] ^= 1
    assert card.tx(bytes(tampered)) == b"\x69\x82"
    # A PUT sealed for another instruction cannot be replayed as DELETE.
    challenge = card.tx(CHALLENGE)[:-2]
    put = sealed_put(card.transport_key, challenge, b"\x80\x01\x01")
    as_delete = bytes((c.CLA_SEALED, c.INS_DELETE_CONTAINER)) + put[2:]
    assert card.tx(as_delete) == b"\x69\x82"
    assert len(host.list_containers(card.tx)) == 1


def test_challenge_and_sealed_command_parameters() -> None:
    card = make_card()
    assert card.tx(command(0, c.INS_GET_CHALLENGE, le=8)) == b"\x67\x00"
    assert card.tx(command(0, c.INS_GET_CHALLENGE, 1, 0, le=16)) == b"\x6a\x86"
    card.tx(CHALLENGE)
    assert card.tx(command(c.CLA_SEALED, c.INS_PUT_CONTAINER, 0, 0, bytes(20))) == b"\x67\x00"
    card.tx(CHALLENGE)
    assert card.tx(command(c.CLA_SEALED, c.INS_PUT_CONTAINER, 1, 0, bytes(32))) == b"\x6a\x86"
    challenge = card.tx(CHALLENGE)[:-2]
    bad_tlv = sealed_put(card.transport_key, challenge, b"\x81\x01A")  # no URI, no PSK
    assert card.tx(bad_tlv) == b"\x6a\x80"


def test_a_card_without_transport_key_refuses_personalization() -> None:
    card = make_card()
    del card.eeprom.cells["perso.tk"]
    assert card.tx(CHALLENGE) == b"\x69\x85"
