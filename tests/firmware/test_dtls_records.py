"""Record layer and key schedule: known answers, an independent OpenSSL check, tampering."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.dtls.records import (
    CT_APPLICATION_DATA,
    CT_HANDSHAKE,
    DTLS_1_2,
    CcmProtection,
    KeyBlock,
    Record,
    RecordError,
    ReplayWindow,
    encode_record,
    extended_master_secret,
    master_secret,
    parse_records,
    prf,
    psk_premaster_secret,
)
from tests.conftest import require_tool

# TLS 1.2 PRF (P_SHA256) vector posted to the IETF TLS list,
# https://www.ietf.org/mail-archive/web/tls/current/msg03416.html, and checked below
# against `openssl kdf ... TLS1-PRF`.
PRF_SECRET = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
PRF_SEED = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
PRF_LABEL = b"test label"
PRF_OUTPUT = bytes.fromhex(
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
    "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
    "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
    "87347b66"
)


def _openssl_prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    openssl = require_tool("openssl")
    out = subprocess.run(
        [
            openssl,
            "kdf",
            "-keylen",
            str(length),
            "-kdfopt",
            "digest:SHA256",
            "-kdfopt",
            f"hexsecret:{secret.hex()}",
            "-kdfopt",
            f"hexseed:{(label + seed).hex()}",
            "TLS1-PRF",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return bytes.fromhex(out.strip().replace(":", ""))


def _prf_by_the_book(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 5 written out again, on cryptography's HMAC rather than the stdlib's."""

    def mac(data: bytes) -> bytes:
        h = crypto_hmac.HMAC(secret, hashes.SHA256())
        h.update(data)
        return h.finalize()

    a = [label + seed]
    out = b""
    while len(out) < length:
        a.append(mac(a[-1]))
        out += mac(a[-1] + label + seed)
    return out[:length]


def test_prf_known_answer() -> None:
    assert prf(PRF_SECRET, PRF_LABEL, PRF_SEED, 100) == PRF_OUTPUT


@pytest.mark.peer
def test_prf_known_answer_agrees_with_openssl() -> None:
    assert _openssl_prf(PRF_SECRET, PRF_LABEL, PRF_SEED, 100) == PRF_OUTPUT


@pytest.mark.peer
def test_master_secrets_agree_with_openssl() -> None:
    premaster = psk_premaster_secret(b"c2VjcmV0LXBzay0x")
    client_random, server_random = bytes(range(32)), bytes(range(32, 64))
    assert master_secret(premaster, client_random, server_random) == _openssl_prf(
        premaster, b"master secret", client_random + server_random, 48
    )
    session_hash = bytes(range(100, 132))
    assert extended_master_secret(premaster, session_hash) == _openssl_prf(
        premaster, b"extended master secret", session_hash, 48
    )


@settings(max_examples=50)
@given(st.binary(max_size=80), st.binary(max_size=20), st.binary(max_size=80), st.integers(0, 200))
def test_prf_matches_an_independent_implementation(
    secret: bytes, label: bytes, seed: bytes, length: int
) -> None:
    assert prf(secret, label, seed, length) == _prf_by_the_book(secret, label, seed, length)


def test_psk_premaster_secret_layout() -> None:
    # RFC 4279 2: uint16 N, N zeros, uint16 N, psk
    assert psk_premaster_secret(b"abc") == bytes.fromhex("0003 000000 0003 616263")


def test_key_block_split_has_no_mac_keys() -> None:
    master = bytes(48)
    cr, sr = b"c" * 32, b"s" * 32
    block = prf(master, b"key expansion", sr + cr, 40)
    keys = KeyBlock.derive(master, cr, sr)
    assert keys.client_write_key + keys.server_write_key == block[:32]
    assert keys.client_write_iv + keys.server_write_iv == block[32:]
    assert block.hex() not in repr(keys) and keys.client_write_key.hex() not in repr(keys)


KEY = bytes(range(16))
SALT = bytes.fromhex("a1a2a3a4")


def test_ccm_record_matches_rfc_6655_construction() -> None:
    """Nonce = salt + epoch + seq (explicit part sent first).

    AAD = epoch + seq, type, version, plaintext length."""
    sealed = CcmProtection(KEY, SALT).seal(CT_APPLICATION_DATA, DTLS_1_2, 1, 0x0102030405, b"hi")
    explicit = bytes.fromhex("0001 000102030405")
    aad = bytes.fromhex("0001 000102030405 17 fefd 0002")
    expected = AESCCM(KEY, tag_length=8).encrypt(SALT + explicit, b"hi", aad)
    assert sealed == explicit + expected
    assert len(sealed) == 8 + 2 + 8


def test_ccm_open_round_trip_and_tamper() -> None:
    protection = CcmProtection(KEY, SALT)
    fragment = protection.seal(CT_HANDSHAKE, DTLS_1_2, 1, 7, b"finished!")
    record = Record(CT_HANDSHAKE, DTLS_1_2, 1, 7, fragment)
    assert protection.open(record) == b"finished!"
    for changed in (
        Record(CT_APPLICATION_DATA, DTLS_1_2, 1, 7, fragment),  # type is authenticated
        Record(CT_HANDSHAKE, DTLS_1_2, 1, 8, fragment),  # so is the sequence number
        Record(CT_HANDSHAKE, DTLS_1_2, 2, 7, fragment),  # and the epoch
        Record(CT_HANDSHAKE, 0xFEFF, 1, 7, fragment),  # and the version
        Record(CT_HANDSHAKE, DTLS_1_2, 1, 7, fragment[:-1] + bytes([fragment[-1] ^ 1])),
        Record(CT_HANDSHAKE, DTLS_1_2, 1, 7, fragment[:10]),
        Record(CT_HANDSHAKE, DTLS_1_2, 1, 7, b""),
    ):
        with pytest.raises(RecordError):
            protection.open(changed)
    assert KEY.hex() not in repr(protection)


def test_parse_records_splits_a_datagram() -> None:
    a = Record(CT_HANDSHAKE, DTLS_1_2, 0, 1, b"abc")
    b = Record(CT_APPLICATION_DATA, 0xFEFF, 1, 2**48 - 1, b"")
    assert parse_records(encode_record(a) + encode_record(b), 100) == [a, b]


@pytest.mark.parametrize(
    "datagram",
    [
        bytes.fromhex("16fefd00000000000000"),  # truncated header
        bytes.fromhex("16fefd0000000000000000000561"),  # length past the end
        bytes.fromhex("63fefd00000000000000000000"),  # unknown content type
        bytes.fromhex("16030300000000000000000000"),  # TLS, not DTLS
        bytes.fromhex("16fefd00000000000000000000") + b"\x16",  # trailing garbage
    ],
)
def test_parse_records_rejects_malformed(datagram: bytes) -> None:
    with pytest.raises(RecordError):
        parse_records(datagram, 100)


def test_parse_records_enforces_the_size_bound() -> None:
    record = encode_record(Record(CT_HANDSHAKE, DTLS_1_2, 0, 0, bytes(101)))
    with pytest.raises(RecordError):
        parse_records(record, 100)


def test_replay_window() -> None:
    window = ReplayWindow()
    for seq in (5, 3, 70):
        assert window.is_fresh(seq)
        window.mark(seq)
    assert not window.is_fresh(70)  # a duplicate
    assert not window.is_fresh(5)  # seen, and now 65 behind: too old either way
    assert window.is_fresh(69) and window.is_fresh(7)  # inside the window, never seen
    assert not window.is_fresh(6)  # 64 behind the highest: too old
    assert not window.is_fresh(3)
    window.mark(200)
    assert not window.is_fresh(70) and not window.is_fresh(136)
    assert window.is_fresh(199) and window.is_fresh(137)
