"""CoAP codec: round trips (also through aiocoap's codec), strict rejection, URI splitting."""

from __future__ import annotations

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from hypothesis import given
from hypothesis import strategies as st

from firmware.coap_message import (
    OPTION_CONTENT_FORMAT,
    OPTION_URI_HOST,
    OPTION_URI_PATH,
    OPTION_URI_QUERY,
    CoapFormatError,
    CoapMessage,
    CoapsUri,
    MessageType,
    Method,
    code_string,
    decode_message,
    encode_message,
    encode_request,
    encode_uint,
    split_coaps_uri,
)


def test_request_bytes_by_hand() -> None:
    # CON POST, TKL 2, MID 0x1234, token abcd, Uri-Path "open" (delta 11, len 4),
    # Content-Format 0 (delta 1, len 0), payload "go".
    data = encode_request(
        Method.POST, 0x1234, b"\xab\xcd", ["open"], content_format=0, payload=b"go"
    )
    assert data == bytes.fromhex("42021234abcdb46f70656e10ff676f")


def test_request_decodes_with_aiocoap() -> None:
    data = encode_request(
        Method.POST,
        7,
        b"tok",
        ["a", "b" * 20],
        uri_host="lock.example",
        uri_query=["x=1"],
        content_format=60,
        payload=b"\x01",
    )
    message = aiocoap.Message.decode(data)
    assert message.mtype == Type.CON and message.code == Code.POST and message.mid == 7
    assert message.token == b"tok"
    assert message.opt.uri_host == "lock.example"
    assert message.opt.uri_path == ("a", "b" * 20)
    assert message.opt.uri_query == ("x=1",)
    assert message.opt.content_format == 60
    assert message.payload == b"\x01"


def test_aiocoap_response_decodes() -> None:
    response = aiocoap.Message(code=Code.CHANGED, payload=b"opened", location_path=("x" * 300,))
    response.mtype, response.mid, response.token = Type.ACK, 0xBEEF, b"12345678"
    message = decode_message(response.encode())
    assert message.type is MessageType.ACK and message.code_string == "2.04"
    assert message.message_id == 0xBEEF and message.token == b"12345678"
    assert message.option_values(8) == [b"x" * 300]  # Location-Path, 2-byte length form
    assert message.payload == b"opened" and message.is_response


def test_extended_option_forms_round_trip() -> None:
    options = ((1, b""), (14, b"a" * 13), (300, b"b" * 268), (2000, b"c" * 269), (65535, b"d"))
    message = CoapMessage(MessageType.NON, 0x45, 1, b"", options, b"p")
    assert decode_message(encode_message(message)) == message


def test_code_strings() -> None:
    assert code_string(0x44) == "2.04" and code_string(0x84) == "4.04" and code_string(1) == "0.01"


def test_encode_uint_is_minimal() -> None:
    assert encode_uint(0) == b"" and encode_uint(255) == b"\xff" and encode_uint(256) == b"\x01\x00"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x40\x00\x00", "short"),
        (bytes.fromhex("80450001"), "version 2"),
        (bytes.fromhex("49450001") + bytes(9), "TKL 9"),
        (bytes.fromhex("4245000161"), "truncated token"),
        (bytes.fromhex("40450001f1ff"), "delta nibble 15"),
        (bytes.fromhex("404500011f"), "length nibble 15"),
        (bytes.fromhex("40450001ff"), "payload marker, no payload"),
        (bytes.fromhex("40450001b3616263"[:-2]), "truncated option value"),
        (bytes.fromhex("40450001d1"), "truncated 1-byte extension"),
        (bytes.fromhex("40450001e100"), "truncated 2-byte extension"),
        (bytes.fromhex("40450001e0fef0e0fef0"), "option number past 65535"),
        (bytes.fromhex("6000000100"), "Empty message with a byte after the MID"),
        (bytes.fromhex("61000001aa"), "Empty message with a token"),
    ],
)
def test_malformed_messages_are_rejected(data: bytes, why: str) -> None:
    with pytest.raises(CoapFormatError):
        decode_message(data)


def test_empty_ack_decodes() -> None:
    message = decode_message(bytes.fromhex("60001234"))
    assert message.type is MessageType.ACK and message.is_empty and message.message_id == 0x1234


def test_encode_refuses_bad_messages() -> None:
    with pytest.raises(CoapFormatError):
        encode_message(CoapMessage(MessageType.CON, 1, 1, b"123456789"))
    with pytest.raises(CoapFormatError):
        encode_message(CoapMessage(MessageType.ACK, 0, 1, b"t"))
    with pytest.raises(CoapFormatError):
        encode_message(CoapMessage(MessageType.CON, 1, 70000))


@given(st.binary(max_size=64))
def test_decode_raises_only_format_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except CoapFormatError:
        pass


_options = st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=300)), max_size=6).map(
    lambda options: tuple(sorted(options, key=lambda option: option[0]))
)


@given(
    st.sampled_from(MessageType),
    st.integers(1, 255),
    st.integers(0, 65535),
    st.binary(max_size=8),
    _options,
    st.binary(max_size=50),
)
def test_round_trip(
    message_type: MessageType,
    code: int,
    message_id: int,
    token: bytes,
    options: tuple[tuple[int, bytes], ...],
    payload: bytes,
) -> None:
    message = CoapMessage(message_type, code, message_id, token, options, payload)
    assert decode_message(encode_message(message)) == message


def test_split_coaps_uri() -> None:
    uri = split_coaps_uri("coaps://Lock.Example:5690/door/open%20now?who=me&x")
    assert uri == CoapsUri("lock.example", 5690, ("door", "open now"), ("who=me", "x"))
    assert uri.request_options() == [
        (OPTION_URI_HOST, b"lock.example"),
        (OPTION_URI_PATH, b"door"),
        (OPTION_URI_PATH, b"open now"),
        (OPTION_URI_QUERY, b"who=me"),
        (OPTION_URI_QUERY, b"x"),
    ]


def test_split_coaps_uri_defaults_and_literals() -> None:
    assert split_coaps_uri("coaps://10.0.0.2") == CoapsUri("10.0.0.2", 5684, ())
    assert split_coaps_uri("coaps://[::1]/").path == ()
    v6 = split_coaps_uri("coaps://[fe80::1]:1234/a/")
    assert (v6.host, v6.port, v6.path) == ("fe80::1", 1234, ("a", ""))
    assert v6.request_options() == [(OPTION_URI_PATH, b"a"), (OPTION_URI_PATH, b"")]


@pytest.mark.parametrize(
    "uri",
    [
        "coap://lock/open",  # not DTLS
        "https://lock/open",
        "coaps://lock/open#frag",
        "coaps://user@lock/open",
        "coaps:///open",
        "coaps://lock:99999/open",
        "coaps://lock/%ff",  # not UTF-8
        "coaps://lock/" + "a" * 256,
    ],
)
def test_split_coaps_uri_rejects(uri: str) -> None:
    with pytest.raises(CoapFormatError):
        split_coaps_uri(uri)


def test_content_format_option_number() -> None:
    data = encode_request(Method.GET, 1, b"", [], content_format=50)
    assert decode_message(data).option_values(OPTION_CONTENT_FORMAT) == [b"\x32"]
