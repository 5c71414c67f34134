"""The RACS line grammar: parsing requests, formatting and reading responses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from racs.client import apdu_options
from racs.errors import (
    BadParameterError,
    CommandCode,
    FatalProtocolError,
    RacsError,
    RacsSyntaxError,
    RemoteProtocolError,
    UnknownCommandError,
)
from racs.protocol import (
    Apdu,
    ApduOptions,
    Begin,
    Echo,
    End,
    GetVersion,
    LineReader,
    ListSeids,
    PowerOn,
    Reset,
    format_error,
    format_ok,
    parse_command,
    parse_response_line,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"BEGIN MyLabel", Begin("MyLabel")),
        (b"BEGIN", Begin("")),
        (b"END", End()),
        (b"end", End()),
        (b"GET-VERSION APPEND", GetVersion(append=True)),
        (b"LIST APPEND", ListSeids(append=True)),
        (b"POWERON MySEID APPEND", PowerOn("MySEID", append=True)),
        (b"RESET MySEID", Reset("MySEID")),
        (b"RESET MySEID WARM", Reset("MySEID", warm=True)),
        (b"ECHO hello world", Echo("hello world")),
        (b"APDU MySEID", Apdu("MySEID", None)),
        (
            b"APDU MySEID 00A40400074A544553543030",
            Apdu("MySEID", bytes.fromhex("00A40400074A544553543030")),
        ),
        (
            b"APDU s 00B0000000 CONTINUE=9000 FETCH=00C00000 MORE=61 APPEND",
            Apdu(
                "s",
                bytes.fromhex("00B0000000"),
                ApduOptions(0x9000, b"\x00\xc0\x00\x00", 0x61),
                True,
            ),
        ),
        (
            b"APDU s 00B0000000 CONTINUE=9000",  # options not given stay None: the style decides
            Apdu("s", bytes.fromhex("00B0000000"), ApduOptions(0x9000)),
        ),
        (b"  poweron   s1  \t", PowerOn("s1")),
    ],
)
def test_parse_command(line: bytes, expected: object) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "error", "code"),
    [
        (b"FROBNICATE", UnknownCommandError, "-100"),
        (b"\xff\xfe", UnknownCommandError, "-100"),
        (b"ECHO \x01", UnknownCommandError, "-100"),
        (b"POWERON", RacsSyntaxError, "-508"),
        (b"POWERON bad/seid", BadParameterError, "-408"),
        (b"APDU s1 0A0", RacsSyntaxError, "-506"),
        (b"APDU s1 00A4", RacsSyntaxError, "-506"),
        (b"APDU s1 00A40400 BOGUS=1", RacsSyntaxError, "-506"),
        (b"APDU s1 00A40400 CONTINUE=90", RacsSyntaxError, "-506"),
        (b"BEGIN a b", RacsSyntaxError, "-501"),
        (b"BEGIN " + b"x" * 65, BadParameterError, "-401"),
        (b"SET-VERSION", RacsSyntaxError, "-503"),
        (b"RESET s COLD", RacsSyntaxError, "-505"),
    ],
)
def test_parse_errors_carry_their_wire_code(line: bytes, error: type, code: str) -> None:
    with pytest.raises(error) as info:
        parse_command(line)
    assert info.value.wire_code() == code


@given(st.binary(max_size=200))
def test_any_line_parses_or_raises_a_racs_error(line: bytes) -> None:
    try:
        parse_command(line.replace(b"\n", b""))
    except RacsError as err:
        assert err.wire_code().startswith("-")


def test_format_and_read_back() -> None:
    assert format_ok(CommandCode.APDU, 5, "9000") == "+006 005 9000\r\n"
    line = format_error(BadParameterError("no\r\nsuch SEID"), 3, CommandCode.POWERON)
    assert line == "-408 003 no such SEID\r\n"
    parsed = parse_response_line(line)
    assert (parsed.ok, parsed.code, parsed.index, parsed.text) == (False, "-408", 3, "no such SEID")
    assert parse_response_line("+004 002 MySEID OtherSEID").text == "MySEID OtherSEID"
    with pytest.raises(RemoteProtocolError):  # the server misbehaved, not the caller
        parse_response_line("hello")


def test_line_reader_splits_crlf_and_lf_and_bounds_length() -> None:
    reader = LineReader(max_line=10)
    reader.feed(b"ab\r\ncd\nef")
    assert reader.next_line() == b"ab"
    assert reader.next_line() == b"cd"
    assert reader.next_line() is None
    reader.feed(b"ghij")
    assert reader.next_line() is None
    reader.feed(b"klmn")  # "efghijklmn" and no newline: 10 is still fine, 11 is not
    assert reader.next_line() is None
    reader.feed(b"o")
    with pytest.raises(FatalProtocolError):
        reader.next_line()


def test_line_reader_refuses_a_long_line_even_when_its_newline_came_too() -> None:
    reader = LineReader(max_line=4)
    reader.feed(b"123456\n")
    with pytest.raises(FatalProtocolError):
        reader.next_line()


def test_the_client_spells_apdu_options_as_the_parser_reads_them() -> None:
    options = apdu_options(expect_sw=0x9000, more=0x61, fetch=bytes.fromhex("00C00000"))
    assert options == " CONTINUE=9000 MORE=61 FETCH=00C00000"
    parsed = parse_command(f"APDU card1 00CA7F2100{options} APPEND".encode())
    assert parsed == Apdu(
        "card1", bytes.fromhex("00CA7F2100"), ApduOptions(0x9000, bytes.fromhex("00C00000"), 0x61),
        append=True,
    )  # fmt: skip
    assert apdu_options() == ""
