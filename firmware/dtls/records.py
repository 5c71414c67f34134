"""DTLS 1.2 record layer and key schedule for TLS_PSK_WITH_AES_128_CCM_8.

What the applet's DTLS client (``firmware.dtls.client``) needs, and nothing more:

- the record header of RFC 6347 4.1 (type, version, epoch, 48-bit sequence
  number, length) and a strict parser for the records of one datagram;
- record protection with AES-128-CCM and an 8-byte tag (RFC 6655 3): nonce =
  4-byte implicit salt (the write IV of the key block) + 8-byte explicit nonce,
  and the explicit nonce is epoch + sequence number, sent in front of the
  ciphertext; AAD = epoch + seq (8) + type + version + plaintext length;
- the TLS 1.2 PRF with SHA-256 (RFC 5246 5), the PSK premaster secret
  (RFC 4279 2), the master secret (plain, or extended per RFC 7627) and the key
  block, which for this AEAD suite holds no MAC keys: client key 16, server
  key 16, client IV 4, server IV 4;
- the anti-replay sliding window of RFC 6347 4.1.2.6.

Objects holding key material never show it in ``repr``. Python cannot wipe
``bytes``; the client drops its references as soon as it can.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CONTENT_TYPES = frozenset({CT_CHANGE_CIPHER_SPEC, CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA})

DTLS_1_0 = 0xFEFF
DTLS_1_2 = 0xFEFD

RECORD_HEADER_SIZE = 13
EXPLICIT_NONCE_SIZE = 8
TAG_SIZE = 8
RECORD_OVERHEAD = EXPLICIT_NONCE_SIZE + TAG_SIZE  # added by protection to each record
MAX_PLAINTEXT = 2**14  # RFC 5246 6.2.1
MAX_SEQUENCE = 2**48 - 1

TLS_PSK_WITH_AES_128_CCM_8 = 0xC0A8
KEY_SIZE = 16
IV_SIZE = 4
KEY_BLOCK_SIZE = 2 * KEY_SIZE + 2 * IV_SIZE
MASTER_SECRET_SIZE = 48
VERIFY_DATA_SIZE = 12
REPLAY_WINDOW = 64

_HEADER = struct.Struct("!BHH6sH")
_AAD = struct.Struct("!H6sBHH")


class RecordError(Exception):
    """A record the layer cannot accept: malformed, or failing authentication."""


@dataclass(frozen=True, slots=True)
class Record:
    content_type: int
    version: int
    epoch: int
    seq: int
    fragment: bytes = field(repr=False)

    def header(self, length: int) -> bytes:
        return _HEADER.pack(
            self.content_type, self.version, self.epoch, self.seq.to_bytes(6, "big"), length
        )


def encode_record(record: Record) -> bytes:
    return record.header(len(record.fragment)) + record.fragment


def parse_records(datagram: bytes, max_fragment: int) -> list[Record]:
    """Split one datagram into records; raise RecordError on anything malformed.

    RFC 6347 4.1.2.7 lets a receiver drop the rest of a datagram whose records it
    cannot parse; the caller does exactly that (it keeps nothing from the datagram).
    """
    records: list[Record] = []
    pos = 0
    while pos < len(datagram):
        if len(datagram) - pos < RECORD_HEADER_SIZE:
            raise RecordError("truncated record header")
        ctype, version, epoch, seq, length = _HEADER.unpack_from(datagram, pos)
        pos += RECORD_HEADER_SIZE
        if ctype not in CONTENT_TYPES:
            raise RecordError(f"unknown content type {ctype}")
        if version >> 8 != 0xFE:
            raise RecordError(f"not a DTLS record version: {version:#06x}")
        if length > max_fragment or pos + length > len(datagram):
            raise RecordError("record length out of bounds")
        records.append(
            Record(ctype, version, epoch, int.from_bytes(seq, "big"), datagram[pos : pos + length])
        )
        pos += length
    return records


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """TLS 1.2 PRF with SHA-256: P_SHA256(secret, label + seed)[:length] (RFC 5246 5)."""
    full_seed = label + seed
    out = bytearray()
    a = full_seed
    while len(out) < length:
        a = _hmac_sha256(secret, a)
        out += _hmac_sha256(secret, a + full_seed)
    return bytes(out[:length])


def psk_premaster_secret(psk: bytes) -> bytes:
    """RFC 4279 2: uint16 N, N zero bytes, uint16 N, the PSK (plain PSK: other_secret is zeros)."""
    n = len(psk)
    return struct.pack("!H", n) + bytes(n) + struct.pack("!H", n) + psk


def master_secret(premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return prf(premaster, b"master secret", client_random + server_random, MASTER_SECRET_SIZE)


def extended_master_secret(premaster: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 4: the master secret bound to the hash of the handshake up to ClientKeyExchange."""
    return prf(premaster, b"extended master secret", session_hash, MASTER_SECRET_SIZE)


def finished_verify_data(master: bytes, label: bytes, transcript_hash: bytes) -> bytes:
    return prf(master, label, transcript_hash, VERIFY_DATA_SIZE)


def sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


class CcmProtection:
    """AES-128-CCM-8 protection of one direction of one epoch (RFC 6655 3, RFC 6347 4.1.2.1)."""

    __slots__ = ("_aead", "_salt")

    def __init__(self, key: bytes, salt: bytes) -> None:
        if len(key) != KEY_SIZE or len(salt) != IV_SIZE:
            raise ValueError("AES-128-CCM-8 needs a 16-byte key and a 4-byte salt")
        self._aead = AESCCM(key, tag_length=TAG_SIZE)
        self._salt = salt

    def __repr__(self) -> str:
        return "CcmProtection(<secret>)"

    @staticmethod
    def _aad(record_type: int, version: int, epoch: int, seq: int, length: int) -> bytes:
        # seq_num (epoch + sequence number), type, version, plaintext length: not the
        # order of the record header, which starts with the type.
        return _AAD.pack(epoch, seq.to_bytes(6, "big"), record_type, version, length)

    def seal(self, record_type: int, version: int, epoch: int, seq: int, plaintext: bytes) -> bytes:
        explicit = struct.pack("!H", epoch) + seq.to_bytes(6, "big")
        aad = self._aad(record_type, version, epoch, seq, len(plaintext))
        return explicit + self._aead.encrypt(self._salt + explicit, plaintext, aad)

    def open(self, record: Record) -> bytes:
        """Decrypt a protected record; raise RecordError if it does not authenticate."""
        fragment = record.fragment
        if len(fragment) < RECORD_OVERHEAD:
            raise RecordError("protected record too short")
        explicit = fragment[:EXPLICIT_NONCE_SIZE]
        aad = self._aad(
            record.content_type,
            record.version,
            record.epoch,
            record.seq,
            len(fragment) - RECORD_OVERHEAD,
        )
        try:
            return self._aead.decrypt(self._salt + explicit, fragment[EXPLICIT_NONCE_SIZE:], aad)
        except InvalidTag:
            raise RecordError("record failed authentication") from None


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """The four keys of RFC 5246 6.3 for an AEAD suite; ``repr`` shows none of them."""

    client_write_key: bytes = field(repr=False)
    server_write_key: bytes = field(repr=False)
    client_write_iv: bytes = field(repr=False)
    server_write_iv: bytes = field(repr=False)

    @classmethod
    def derive(cls, master: bytes, client_random: bytes, server_random: bytes) -> KeyBlock:
        block = prf(master, b"key expansion", server_random + client_random, KEY_BLOCK_SIZE)
        k, v = KEY_SIZE, IV_SIZE
        return cls(block[:k], block[k : 2 * k], block[2 * k : 2 * k + v], block[2 * k + v :])


class ReplayWindow:
    """RFC 6347 4.1.2.6 sliding window over the sequence numbers of one epoch."""

    __slots__ = ("_bitmap", "_highest")

    def __init__(self) -> None:
        self._highest = -1
        self._bitmap = 0  # bit i set: sequence number highest - i was received

    def is_fresh(self, seq: int) -> bool:
        if seq > self._highest:
            return True
        offset = self._highest - seq
        return offset < REPLAY_WINDOW and not (self._bitmap >> offset) & 1

    def mark(self, seq: int) -> None:
        """Record ``seq`` as received; call only after the record authenticated."""
        if seq > self._highest:
            shift = seq - self._highest
            self._bitmap = ((self._bitmap << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self._highest = seq
        else:
            self._bitmap |= 1 << (self._highest - seq)
