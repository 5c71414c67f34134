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
from elock_testkit.pcsc import READER

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


def _connection() -> object:
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == READER)
    connection = reader.createConnection()
    connection.connect()
    return connection


def _transmit(connection: object, apdu: bytes) -> bytes:
    data, sw1, sw2 = connection.transmit(list(apdu))  # type: ignore[attr-defined]
    return bytes(data) + bytes([sw1, sw2])


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


def _ordinary_apdus_answered(connection: object) -> None:
    began = time.monotonic()
    assert _within(ANSWER_DEADLINE, lambda: _transmit(connection, SELECT)) == b"\x90\x00"
    listed = _within(ANSWER_DEADLINE, lambda: _transmit(connection, LIST))
    assert isinstance(listed, bytes) and listed[-2:] == b"\x90\x00"
    print(f"\nordinary APDUs answered {time.monotonic() - began:.3f} s after")


@pytest.mark.peer
@pytest.mark.parametrize("byte", [0x80, 0x00, 0x01, 0x02], ids=["80", "00", "01", "02"])
def test_one_byte_apdu_is_refused_and_the_reader_lives_on(served: ServedCard, byte: int) -> None:
    connection = _connection()
    try:
        assert _transmit(connection, SELECT) == b"\x90\x00"
        answer = _within(ANSWER_DEADLINE, lambda: _transmit(connection, bytes([byte])))
        assert answer == b"\x67\x00", answer
        _ordinary_apdus_answered(connection)
        other = _connection()  # and every other client of the reader
        try:
            _ordinary_apdus_answered(other)
        finally:
            other.disconnect()  # type: ignore[attr-defined]
    finally:
        connection.disconnect()  # type: ignore[attr-defined]


@pytest.mark.peer
def test_an_apdu_too_long_for_vpcd_is_refused_and_the_card_comes_back(served: ServedCard) -> None:
    from smartcard.Exceptions import CardConnectionException

    connection = _connection()
    try:
        assert _transmit(connection, SELECT) == b"\x90\x00"
        oversized = bytes([0x80, c.INS_LIST, 0, 0, 0, 0xFF, 0xFF]) + bytes(65544 - 7)
        failed = _within(ANSWER_DEADLINE, lambda: _transmit(connection, oversized))
        assert isinstance(failed, CardConnectionException), failed
    finally:
        try:
            connection.disconnect()  # type: ignore[attr-defined]
        except CardConnectionException:
            pass  # the card was reset under this handle
    deadline = time.monotonic() + ANSWER_DEADLINE
    while True:  # pcscd sees the card again at its next presence poll (400 ms)
        try:
            connection = _connection()
            break
        except CardConnectionException:
            if time.monotonic() > deadline:
                pytest.fail(f"no card in {READER!r} {ANSWER_DEADLINE} s after the oversized APDU")
            time.sleep(0.05)
    try:
        _ordinary_apdus_answered(connection)
    finally:
        connection.disconnect()  # type: ignore[attr-defined]
