"""Pieces of the TLS 1.3 server on their own: wire helpers, messages, key schedule, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from firmware.tls13 import auth_messages as am
from firmware.tls13.alerts import (
    BadRecordMac,
    DecodeError,
    IllegalParameter,
    RecordOverflow,
    UnexpectedMessage,
)
from firmware.tls13.key_schedule import (
    KeySchedule,
    Transcript,
    derive_secret,
    empty_hash,
    hkdf_extract,
    next_traffic_secret,
    traffic_key_iv,
)
from firmware.tls13.messages import (
    HRR_RANDOM,
    ClientHello,
    KeyShareEntry,
    ServerHello,
    pull_client_hello,
    pull_server_hello,
    push_client_hello,
    push_server_hello,
)
from firmware.tls13.records import (
    MAX_PLAINTEXT,
    ContentType,
    HandshakeAssembler,
    Record,
    RecordProtection,
    RecordReader,
)
from firmware.tls13.wire import Buffer, Writer, pull_block

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc8448_key_schedule.json").read_text()
)


def v(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name])


def test_pull_block_refuses_leftovers_and_overruns() -> None:
    with pull_block(Buffer(b"\x02ab"), 1) as inner:
        assert inner.pull_bytes(2) == b"ab"
    with pytest.raises(DecodeError, match="unread"), pull_block(Buffer(b"\x02ab"), 1) as inner:
        inner.pull_bytes(1)
    with pytest.raises(DecodeError, match="overruns"), pull_block(Buffer(b"\x05ab"), 1):
        pass
    out = Writer()
    with out.push_block(2):
        out.push_bytes(b"xyz")
    assert out.getvalue() == b"\x00\x03xyz"


def test_rfc8448_key_schedule() -> None:
    early = hkdf_extract(bytes(32), bytes(32))
    assert early == v("early_secret")
    assert derive_secret(early, b"derived", empty_hash()) == v("derived_for_handshake")
    schedule = KeySchedule(v("ecdhe_shared_secret"), v("hash_client_hello_server_hello"))
    assert schedule.client_handshake == v("client_handshake_traffic_secret")
    assert schedule.server_handshake == v("server_handshake_traffic_secret")
    assert traffic_key_iv(schedule.server_handshake) == (
        v("server_handshake_key"),
        v("server_handshake_iv"),
    )
    assert traffic_key_iv(schedule.client_handshake) == (
        v("client_handshake_key"),
        v("client_handshake_iv"),
    )
    handshake = hkdf_extract(v("derived_for_handshake"), v("ecdhe_shared_secret"))
    assert handshake == v("handshake_secret")
    assert derive_secret(handshake, b"derived", empty_hash()) == v("derived_for_master")
    assert hkdf_extract(v("derived_for_master"), bytes(32)) == v("master_secret")
    schedule.derive_application(v("hash_client_hello_server_finished"))
    assert schedule.client_application == v("client_application_traffic_secret")
    assert schedule.server_application == v("server_application_traffic_secret")
    assert "hidden" in repr(schedule) and VECTORS["master_secret"] not in repr(schedule)


def test_transcript_after_retry_uses_message_hash() -> None:
    transcript = Transcript()
    transcript.add(b"\x01\x00\x00\x02hi")
    hello_hash = transcript.digest()
    transcript.restart_for_retry()
    expected = Transcript()
    expected.add(b"\xfe\x00\x00\x20" + hello_hash)
    assert transcript.digest() == expected.digest()


hellos = st.builds(
    ClientHello,
    random=st.binary(min_size=32, max_size=32),
    legacy_session_id=st.binary(max_size=32),
    cipher_suites=st.lists(st.integers(0, 0xFFFF), max_size=5),
    legacy_compression_methods=st.binary(min_size=1, max_size=3),
    supported_versions=st.none() | st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4),
    supported_groups=st.none() | st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4),
    signature_algorithms=st.none() | st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4),
    key_shares=st.none()
    | st.lists(
        st.builds(KeyShareEntry, st.integers(0, 0xFFFF), st.binary(min_size=1, max_size=70)),
        max_size=3,
    ),
    other_extensions=st.lists(
        st.tuples(st.integers(100, 200), st.binary(max_size=20)),
        max_size=3,
        unique_by=lambda ext: ext[0],
    ),
)


@given(hellos)
def test_client_hello_round_trip(hello: ClientHello) -> None:
    assert pull_client_hello(push_client_hello(hello)) == hello


def test_server_hello_and_retry_round_trip() -> None:
    hello = ServerHello(b"r" * 32, b"s" * 32, 0x1301, KeyShareEntry(23, b"\x04" + bytes(64)))
    assert pull_server_hello(push_server_hello(hello)) == hello
    retry = ServerHello(HRR_RANDOM, b"", 0x1301, selected_group=23)
    assert pull_server_hello(push_server_hello(retry)) == retry
    assert retry.is_retry_request and not hello.is_retry_request


@pytest.mark.parametrize(
    ("message", "push", "pull"),
    [
        (am.EncryptedExtensions([(1, b"x")]), am.push_encrypted_extensions,
         am.pull_encrypted_extensions),
        (am.CertificateRequest(b"", [0x0403], [b"name"]), am.push_certificate_request,
         am.pull_certificate_request),
        (am.Certificate(b"", [b"der1", b"der2"]), am.push_certificate, am.pull_certificate),
        (am.CertificateVerify(0x0403, b"sig"), am.push_certificate_verify,
         am.pull_certificate_verify),
        (am.Finished(bytes(32)), am.push_finished, am.pull_finished),
        (am.KeyUpdate(True), am.push_key_update, am.pull_key_update),
    ],
)  # fmt: skip
def test_message_round_trips(message: object, push: object, pull: object) -> None:
    body = push(message)  # type: ignore[operator]
    assert pull(body) == message  # type: ignore[operator]
    with pytest.raises(DecodeError):
        pull(body + b"\x00")  # type: ignore[operator]


def test_message_limits() -> None:
    with pytest.raises(IllegalParameter):
        am.pull_certificate(am.push_certificate(am.Certificate(b"", [b"c"] * 5)))
    with pytest.raises(IllegalParameter):
        am.pull_key_update(b"\x02")
    with pytest.raises(DecodeError):
        am.pull_finished(bytes(31))


def test_record_protection_sequence_and_padding() -> None:
    writer, reader = RecordProtection(b"k" * 32), RecordProtection(b"k" * 32)
    for i in range(3):
        record = writer.seal(ContentType.APPLICATION_DATA, b"m%d" % i)
        parsed = RecordReader()
        parsed.feed(record)
        got = parsed.next_record()
        assert got is not None
        assert reader.open(got) == (ContentType.APPLICATION_DATA, b"m%d" % i)
    assert writer.sequence == reader.sequence == 3
    replayed = Record(23, record[:5], record[5:])
    with pytest.raises(BadRecordMac):  # the sequence number moved on: a replay fails
        reader.open(replayed)
    assert "k" not in repr(writer)


def test_inner_plaintext_rules() -> None:
    secret = b"s" * 32
    reader = RecordProtection(secret)
    key, iv = traffic_key_iv(secret)

    def forge(inner: bytes, seq: int) -> Record:
        header = bytes([23, 3, 3]) + (len(inner) + 16).to_bytes(2, "big")
        nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big"), strict=True))
        return Record(23, header, AESGCM(key).encrypt(nonce, inner, header))

    assert reader.open(forge(b"hi\x17" + bytes(40), 0)) == (23, b"hi")  # padding stripped
    with pytest.raises(UnexpectedMessage):
        reader.open(forge(bytes(10), 1))  # all zeros: no content type
    with pytest.raises(RecordOverflow):
        reader.open(forge(bytes(MAX_PLAINTEXT + 1) + b"\x17", 2))


def test_handshake_assembler_joins_and_bounds() -> None:
    assembler = HandshakeAssembler()
    assembler.feed(b"\x14\x00\x00\x03a")
    assert assembler.next_message() is None
    with pytest.raises(UnexpectedMessage):
        assembler.require_empty("test")
    assembler.feed(b"bc\x18\x00")
    assert assembler.next_message() == (0x14, b"abc", b"\x14\x00\x00\x03abc")
    assembler.feed(b"\x00\x01\x00")
    assert assembler.next_message() == (0x18, b"\x00", b"\x18\x00\x00\x01\x00")
    with pytest.raises(IllegalParameter):
        assembler.feed(b"\x0b\x01\x00\x00")


def test_key_update_secret_chain() -> None:
    assert next_traffic_secret(b"a" * 32) != b"a" * 32
    assert len(next_traffic_secret(b"a" * 32)) == 32
