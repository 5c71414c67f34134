"""Odd APDUs through the real pcscd: every one is answered or refused, and the reader lives on.

A 1-byte APDU used to hang the vpcd reader for every client (the driver waited
for an answer the card never sent, holding its lock); one over 65,535 bytes
makes the driver drop the card's connection. ``elock-se serve`` runs as a
person runs it, pyscard is the host, and after each odd APDU an ordinary one
(SELECT, LIST) must be answered straight away, without restarting anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from elock_common import card_protocol as c
from elock_testkit.cardproc import ServedCard, make_card
from elock_testkit.pcsc import READER, CardConnection

SELECT = bytes([c.CLA_ISO, c.INS_SELECT, c.P1_SELECT_BY_NAME, 0, len(c.AID)]) + c.AID
LIST = bytes([c.CLA_PROPRIETARY, c.INS_LIST, 0, 0, 0])
ANSWER_DEADLINE = 5.0  # seconds; the ambiguous 1-byte case waits 2 s by design


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCard]:
    import smartcard  # type: ignore[import-untyped]  # noqa: F401  (required: fail if missing)

    served = ServedCard(make_card(tmp_path_factory.mktemp("odd"), []))
    try:
        yield served
    finally:
        served.stop()


def _within(seconds: float, call: Callable[[], bytes]) -> bytes | BaseException:
    """Run ``call`` in a thread; fail the test (not hang it) if it does not return in time."""
    result: list[bytes | BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # the transmit's own error is a result too
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if not result:
        pytest.fail(f"no answer within {seconds} s: the reader hangs")
    return result[0]


def _ordinary_apdus_answered(connection: CardConnection) -> None:
    began = time.monotonic()
    assert _within(ANSWER_DEADLINE, lambda: connection.transmit(SELECT)) == b"\x90\x00"
    listed = _within(ANSWER_DEADLINE, lambda: connection.transmit(LIST))
    assert isinstance(listed, bytes) and listed[-2:] == b"\x90\x00"
    print(f"\nordinary APDUs answered {time.monotonic() - began:.3f} s after")


@pytest.mark.peer
@pytest.mark.parametrize("byte", [0x80, 0x00, 0x01, 0x02], ids=["80", "00", "01", "02"])
def test_one_byte_apdu_is_refused_and_the_reader_lives_on(served: ServedCard, byte: int) -> None:
    with CardConnection() as connection:
        assert connection.transmit(SELECT) == b"\x90\x00"
        answer = _within(ANSWER_DEADLINE, lambda: connection.transmit(bytes([byte])))
        assert answer == b"\x67\x00", answer
        _ordinary_apdus_answered(connection)
        with CardConnection() as other:  # and every other client of the reader
            _ordinary_apdus_answered(other)


@pytest.mark.peer
def test_an_apdu_too_long_for_vpcd_is_refused_and_the_card_comes_back(served: ServedCard) -> None:
    from smartcard.Exceptions import CardConnectionException, NoCardException

    connection = CardConnection()
    try:
        assert connection.transmit(SELECT) == b"\x90\x00"
        oversized = bytes([0x80, c.INS_LIST, 0, 0, 0, 0xFF, 0xFF]) + bytes(65544 - 7)
        failed = _within(ANSWER_DEADLINE, lambda: connection.transmit(oversized))
        assert isinstance(failed, CardConnectionException), failed
    finally:
        try:
            connection.close()
        except CardConnectionException:
            pass  # the card was reset under this handle
    deadline = time.monotonic() + ANSWER_DEADLINE
    while True:  # pcscd sees the card again at its next presence poll (400 ms)
        try:
            connection = CardConnection()
            break
        except (CardConnectionException, NoCardException):  # not seen again yet
            if time.monotonic() > deadline:
                pytest.fail(f"no card in {READER!r} {ANSWER_DEADLINE} s after the oversized APDU")
            time.sleep(0.05)
    with connection:
        _ordinary_apdus_answered(connection)
