"""``ResponseChain``: one command's whole answer across 61xx and 6Cxx, against a scripted card."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from elock_common.apdu import MAX_CHAINED_RESPONSES, ResponseChain, exchange

GET_DATA = bytes.fromhex("00CA7F2100")


def card(answer: bytes, *, wrong_le: int | None = None) -> tuple[Callable[[bytes], bytes], list]:
    """A card that serves *answer* 256 bytes at a time, and 6Cxx first if *wrong_le*."""
    sent: list[bytes] = []
    left = bytearray(answer)

    def transmit(command: bytes) -> bytes:
        sent.append(command)
        if wrong_le is not None and len(sent) == 1:
            return bytes([0x6C, wrong_le])
        chunk = left[:256]
        del left[:256]
        return bytes(chunk) + (bytes([0x61, min(len(left), 256) % 256]) if left else b"\x90\x00")

    return transmit, sent


def test_61xx_is_followed_with_get_response_until_9000() -> None:
    answer = bytes(range(256)) * 2 + b"tail"
    transmit, sent = card(answer)
    assert exchange(transmit, GET_DATA) == (answer, 0x9000)
    assert sent[1:] == [bytes.fromhex("00C0000000"), bytes.fromhex("00C0000004")]


def test_6cxx_resends_a_le_only_command_once_with_the_le_asked_for() -> None:
    transmit, sent = card(b"\x01\x02\x03", wrong_le=3)
    assert exchange(transmit, GET_DATA) == (b"\x01\x02\x03", 0x9000)
    assert sent == [GET_DATA, bytes.fromhex("00CA7F2103")]


@pytest.mark.parametrize(
    ("command", "response"),
    [
        (bytes.fromhex("00D8000105AABBCCDDEE00"), b"\x6c\x10"),  # not a Le-only command
        (GET_DATA, b"\x6c\x00"),  # names no length
        (GET_DATA, b"\x01\x6c\x10"),  # carries data: not a wrong-Le answer
    ],
)
def test_6cxx_that_is_no_wrong_le_answer_is_final(command: bytes, response: bytes) -> None:
    chain = ResponseChain(command)
    assert chain.receive(response) is None
    assert chain.sw == int.from_bytes(response[-2:], "big")


def test_a_card_stuck_in_61xx_is_bounded() -> None:
    sent: list[bytes] = []

    def stuck(command: bytes) -> bytes:
        sent.append(command)
        return b"\x00\x61\x01"

    data, sw = exchange(stuck, GET_DATA)
    assert sw == 0x6101 and len(sent) == MAX_CHAINED_RESPONSES == len(data)


def test_no_status_word_reads_as_6f00_and_a_complete_chain_takes_nothing_more() -> None:
    chain = ResponseChain(GET_DATA)
    assert chain.receive(b"\x90") is None and chain.sw == 0x6F00
    with pytest.raises(ValueError, match="complete"):
        chain.receive(b"\x90\x00")
