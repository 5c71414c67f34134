"""The sans-I/O session: blocks, APPEND, error blocks, flushing, limits; no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from racs.errors import InUseError, LocalProtocolError
from racs.protocol import Apdu, GetVersion
from racs.session import Closed, CommandRequest, Limits, NeedData, RacsSession, State
from tests.racs import seed

# The session reads the protocol's CRLF lines.
SEED_REQUEST = seed.SEED_REQUEST.replace("\n", "\r\n").encode()
ANSWERS = {
    "GetVersion": "0.2",
    "ListSeids": "MySEID OtherSEID",
    "PowerOn": "MySEID is powered on",
    "Reset": "MySEID reseted",
    "Apdu": "9000",
}


def run(session: RacsSession, data: bytes, answer: dict[str, str] | None = None) -> str:
    """Feed *data*, answer every command from *answer*, return what goes on the wire."""
    session.receive_data(data)
    while True:
        event = session.next_event()
        if isinstance(event, CommandRequest):
            session.succeed((answer or ANSWERS)[type(event.command).__name__])
        else:
            return session.data_to_send().decode()


def test_seed_example_block() -> None:
    session = RacsSession()
    out = run(session, SEED_REQUEST)
    assert out.split("\r\n") == [*seed.SEED_ANSWER, ""]
    assert session.state is State.IDLE


def test_empty_block_and_byte_by_byte_input() -> None:
    session = RacsSession()
    out = "".join(run(session, bytes([b])) for b in b"BEGIN x\nEND\n")
    assert out == "BEGIN x\r\n+001 000 No error\r\nEND\r\n"


def test_error_answers_at_once_and_skips_the_rest_of_the_block() -> None:
    session = RacsSession()
    session.receive_data(b"BEGIN b\nGET-VERSION APPEND\nPOWERON s APPEND\nECHO not-run\nEND\n")
    first = session.next_event()
    assert isinstance(first, CommandRequest) and first.command == GetVersion(True)
    session.succeed("0.2")
    second = session.next_event()
    assert isinstance(second, CommandRequest) and second.index == 2
    session.fail(InUseError("s is locked by another session"))
    assert isinstance(session.next_event(), NeedData)  # ECHO was skipped
    assert (
        session.data_to_send() == b"BEGIN b\r\n-708 002 s is locked by another session\r\nEND\r\n"
    )
    assert session.state is State.IDLE
    assert run(session, b"BEGIN c\nECHO hi\nEND\n", {"Echo": "hi"}).endswith(
        "+009 001 hi\r\nEND\r\n"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello\n", "BEGIN\r\n-100 000 unknown command 'hello'\r\nEND\r\n"),
        (b"LIST\n", "BEGIN\r\n-304 000 waiting for BEGIN\r\nEND\r\n"),
        (b"BEGIN a\nBEGIN b\nEND\n", "BEGIN a\r\n-301 001 duplicate BEGIN\r\nEND\r\n"),
        (
            b"BEGIN a\nAPDU s\nZZ\nEND\n",
            "BEGIN a\r\n-506 001 APDU is not an even number of hex digits\r\nEND\r\n",
        ),
        (b"BEGIN a\nAPDU s\nEND\n", "BEGIN a\r\n-506 001 APDU without its hex data\r\nEND\r\n"),
    ],
)
def test_garbage_gets_error_lines(data: bytes, expected: str) -> None:
    session = RacsSession()
    assert run(session, data) == expected
    assert session.state is State.IDLE


def test_overlong_line_closes_with_an_error_line() -> None:
    session = RacsSession(Limits(max_line=64))
    out = run(session, b"BEGIN a\n" + b"A" * 100)
    assert out == "BEGIN a\r\n-500 001 line longer than 64 bytes\r\nEND\r\n"
    assert session.state is State.CLOSED
    assert isinstance(session.next_event(), Closed)


def test_block_line_limit_and_idle_garbage_limit() -> None:
    session = RacsSession(Limits(max_block_lines=3))
    out = run(session, b"BEGIN a\nECHO 1\nECHO 2\nECHO 3\nECHO 4\n", {"Echo": "x"})
    assert "block has too many lines" in out and session.state is State.CLOSED
    session = RacsSession(Limits(max_idle_errors=2))
    run(session, b"x\ny\nz\n")
    assert session.state is State.CLOSED


def test_response_size_limit_turns_into_an_error_line() -> None:
    session = RacsSession(Limits(max_response_bytes=60))
    out = run(session, b"BEGIN a\nECHO 1 APPEND\nECHO 2\nEND\n", {"Echo": "y" * 30})
    assert out == "BEGIN a\r\n-909 002 response too large\r\nEND\r\n"


def test_api_misuse_is_a_local_error() -> None:
    session = RacsSession()
    with pytest.raises(LocalProtocolError):
        session.succeed("nothing pending")
    session.receive_data(b"BEGIN\nAPDU s 00A4040000\n")
    event = session.next_event()
    assert isinstance(event, CommandRequest) and isinstance(event.command, Apdu)
    with pytest.raises(LocalProtocolError):
        session.next_event()


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(
            [
                b"BEGIN x",
                b"END",
                b"LIST",
                b"ECHO a APPEND",
                b"APDU s",
                b"APDU s 00A4040000",
                b"POWERON s",
                b"",
                b"\xff",
                b"FOO",
                b"00A4",
                b"RESET s WARM APPEND",
            ]
        ),
        max_size=30,
    ),
    st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_any_line_sequence_keeps_the_machine_sound(lines: list[bytes], fail: list[bool]) -> None:
    """Whatever arrives, only table transitions happen and every output is well formed."""
    session = RacsSession(Limits(max_idle_errors=1000))
    session.receive_data(b"\n".join(lines) + b"\n")
    i = 0
    while True:
        event = session.next_event()
        if not isinstance(event, CommandRequest):
            break
        if fail[i % len(fail)]:
            session.fail(InUseError("busy"))
        else:
            session.succeed("ok")
        i += 1
    for line in session.data_to_send().decode().split("\r\n")[:-1]:
        assert line == "END" or line.startswith(("BEGIN", "+0", "-"))
