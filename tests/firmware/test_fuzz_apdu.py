"""APDU fuzzing: any command, in any applet state, gets a declared status word and no PSK.

Sequences of random and mutated valid commands run against a card in each of
the states a host can leave it in (unselected, selected, PIN verified, Open in
progress with the real DTLS client). Every response must end in a status word
its route declares (6700 for malformed, 6E00/6D00 for unknown commands), carry
data only with 9000 or 61xx, never contain any installed PSK (nor 8 bytes of
one), and ``process`` must never raise.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.container import Flags
from firmware.apdu import ApduCommand, command
from firmware.applet import Applet
from firmware.errors import WrongLengthError
from firmware.opening import default_session_factory
from firmware.personalization import SealingKeys
from firmware.store import Store
from firmware.virtual import host
from tests.firmware.helpers import NOW_MS, PIN, PSKS, SELECT, Card, container, make_card

FIXED_CHALLENGE = b"\x11" * 16  # the fuzz card's rng, so sealed commands can be valid
TRANSPORT_KEY = bytes(range(32))


def fixed_rng(n: int) -> bytes:
    return (FIXED_CHALLENGE * (n // 16 + 1))[:n]


def fuzz_card(state: str) -> Card:
    card = make_card(transport_key=TRANSPORT_KEY)
    card.install(container(0))
    card.install(container(1, flags=Flags.PIN_REQUIRED))
    card.install(container(2))
    card.applet = Applet(Store(card.eeprom), rng=fixed_rng, session_factory=default_session_factory)
    if state != "unselected":
        card.selected()
    if state == "verified":
        assert card.tx(command(0, c.INS_VERIFY, 0, 0x81, PIN)) == b"\x90\x00"
    if state == "open":
        assert host.open_begin(card.tx, 1, NOW_MS).state == c.STATE_RUNNING
    return card


def _now(ms: int = NOW_MS) -> bytes:
    return tlv.encode(c.TAG_NOW, ms.to_bytes(8, "big"))


def _sealed(ins: int, plain: bytes) -> bytes:
    """Valid after a GET CHALLENGE on the fuzz card; mutations then reach the decoder."""
    header = bytes((c.CLA_SEALED, ins, 0, 0))
    data = SealingKeys(TRANSPORT_KEY).seal(FIXED_CHALLENGE, header, plain)
    return command(c.CLA_SEALED, ins, 0, 0, data, 256)


# A DTLS HelloVerifyRequest-shaped record, so DATAGRAMS mutations reach the DTLS parser.
HVR = bytes.fromhex("16fefd00000000000000000023030000170000000000000017fefd14") + bytes(20)

VALID = [
    SELECT,
    command(0, c.INS_SELECT, 4, 0x0C, c.AID, 256),
    command(c.CLA_PROPRIETARY, c.INS_LIST, le=256),
    command(c.CLA_PROPRIETARY, c.INS_LIST, le=4096),
    command(0, c.INS_GET_RESPONSE, le=256),
    command(0, c.INS_VERIFY, 0, 0x81, PIN),
    command(0, c.INS_VERIFY, 0, 0x81, b"0000"),
    command(0, c.INS_VERIFY, 0, 0x81),
    command(0, c.INS_VERIFY, 0xFF, 0x81),
    command(0, c.INS_GET_CHALLENGE, le=16),
    command(0x80, c.INS_OPEN, 0, 0, tlv.encode(c.TAG_CONTAINER, b"\x01") + _now(), 256),
    command(0x80, c.INS_OPEN, 0, 0, tlv.encode(c.TAG_CONTAINER, b"\x02") + _now(), 256),
    command(0x80, c.INS_DATAGRAMS, 0, 0, _now() + tlv.encode(c.TAG_DATAGRAM_IN, HVR), 256),
    command(0x80, c.INS_DATAGRAMS, 0, 0, _now(NOW_MS + 5000), 256),
    command(0x80, c.INS_TIMER, 0, 0, _now(NOW_MS + 60_000), 256),
    command(0x80, c.INS_CLOSE),
    _sealed(c.INS_PUT_CONTAINER, container(2, label="Fuzzed").to_tlv()),
    _sealed(c.INS_DELETE_CONTAINER, tlv.encode(c.TAG_ID, b"\x03")),
    _sealed(c.INS_SET_PIN, tlv.encode_all([(c.TAG_PIN, b"5678"), (c.TAG_PIN_TRIES, b"\x03")])),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "grow", "header"]))
        if kind == "flip" and raw:
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[draw(st.integers(0, len(raw))) :]
        elif kind == "grow":
            raw += draw(st.binary(min_size=1, max_size=4))
        elif kind == "header" and len(raw) >= 4:
            raw[draw(st.integers(0, 3))] = draw(st.integers(0, 255))
    return bytes(raw)


apdus = st.one_of(
    st.sampled_from(VALID),
    mutated(),
    st.binary(max_size=40),
    st.builds(
        lambda h, d, le: bytes(h) + d + le,
        st.lists(st.sampled_from([0x00, 0x80, 0x84, 0xA4, 0x30, 0x32, 0x34, 0xC0, 0xE2]),
                 min_size=4, max_size=4),
        st.binary(max_size=20),
        st.binary(max_size=2),
    ),
)  # fmt: skip


# GET CHALLENGE then a sealed command, whole or mutated: reaches the decryptor and parsers.
SEALED = VALID[-3:]


@st.composite
def tampered_sealed(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEALED)))
    raw[draw(st.integers(5, len(raw) - 2))] ^= draw(st.integers(1, 255))
    return bytes(raw)


challenge_pairs = st.tuples(
    st.just(command(0, c.INS_GET_CHALLENGE, le=16)),
    st.one_of(st.sampled_from(SEALED), tampered_sealed(), mutated()),
).map(list)
steps = st.one_of(apdus.map(lambda a: [a]), challenge_pairs)


def check(card: Card, apdu: bytes, response: bytes) -> None:
    assert len(response) >= 2, "every response ends in a status word"
    sw = int.from_bytes(response[-2:], "big")
    if response[:-2]:
        assert sw == 0x9000 or sw >> 8 == 0x61, f"data with {sw:04X}"
    for psk in PSKS:
        for i in range(len(psk) - 7):
            assert psk[i : i + 8] not in response, "PSK bytes in a response"
    try:
        cmd = ApduCommand.parse(apdu)
    except WrongLengthError:
        assert sw == 0x6700
        return
    entry = card.applet.registry.find(cmd.cla, cmd.ins)
    if entry is None:
        assert sw == (0x6D00 if card.applet.registry.knows_class(cmd.cla) else 0x6E00)
    else:
        assert entry.declares(sw), f"{entry.name} returned undeclared {sw:04X}"
        assert sw != 0x6F00, f"{entry.name} hit an internal error"


def run(state: str, sequence: list[bytes]) -> None:
    card = fuzz_card(state)
    for apdu in sequence:
        check(card, apdu, card.tx(apdu))
    card.power_up().selected()  # whatever happened, the stored state still parses
    assert len(host.list_containers(card.tx)) >= 1


# 300 examples for each of five states: seconds, so out of the fast run (CI runs them).
pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _test(state: str) -> Callable[[list[bytes]], None]:
    @FUZZ
    @given(st.lists(steps, min_size=1, max_size=10))
    def test(sequence: list[list[bytes]]) -> None:
        run(state, [apdu for step in sequence for apdu in step])

    return test


test_fuzz_unselected = _test("unselected")
test_fuzz_selected = _test("selected")
test_fuzz_pin_verified = _test("verified")
test_fuzz_open_in_progress = _test("open")


@FUZZ
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6))
def test_fuzz_datagrams_into_a_running_open(datagrams: list[bytes]) -> None:
    card = fuzz_card("open")
    for d in datagrams:
        apdu = command(0x80, c.INS_DATAGRAMS, 0, 0, _now() + tlv.encode(c.TAG_DATAGRAM_IN, d), 256)
        response = card.tx(apdu)
        check(card, apdu, response)
        assert response[-2:] in (b"\x90\x00", b"\x69\x85")
