"""The TLS 1.3 key schedule for TLS_AES_128_GCM_SHA256 (RFC 8446 7.1, 4.4.1, 4.4.4).

Written on ``cryptography``'s HMAC and SHA-256 only. No PSK: the early secret
is HKDF-Extract of zeros, so this profile derives exactly

    handshake secret  -> c hs traffic, s hs traffic
    master secret     -> c ap traffic, s ap traffic

``Transcript`` keeps the running hash and, after a HelloRetryRequest, replaces
ClientHello1 by the synthetic ``message_hash`` message (RFC 8446 4.4.1).
Objects holding secrets have a ``repr`` that shows none of them.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

HASH_LENGTH = 32
KEY_LENGTH = 16  # AES-128
IV_LENGTH = 12
_ZEROS = bytes(HASH_LENGTH)
_MESSAGE_HASH = 254


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label; every length used here fits one HMAC block (<= 32)."""
    if not 0 < length <= HASH_LENGTH:
        raise ValueError("this profile only expands up to one hash length")
    full_label = b"tls13 " + label
    info = (
        length.to_bytes(2, "big")
        + bytes([len(full_label)])
        + full_label
        + bytes([len(context)])
        + context
    )
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(info + b"\x01")
    return mac.finalize()[:length]


def derive_secret(secret: bytes, label: bytes, transcript_hash: bytes) -> bytes:
    return hkdf_expand_label(secret, label, transcript_hash, HASH_LENGTH)


def empty_hash() -> bytes:
    return hashes.Hash(hashes.SHA256()).finalize()


def traffic_key_iv(secret: bytes) -> tuple[bytes, bytes]:
    """The record protection key and IV of a traffic secret (RFC 8446 7.3)."""
    return (
        hkdf_expand_label(secret, b"key", b"", KEY_LENGTH),
        hkdf_expand_label(secret, b"iv", b"", IV_LENGTH),
    )


def next_traffic_secret(secret: bytes) -> bytes:
    """application_traffic_secret_N+1 after a KeyUpdate (RFC 8446 7.2)."""
    return hkdf_expand_label(secret, b"traffic upd", b"", HASH_LENGTH)


def finished_verify_data(traffic_secret: bytes, transcript_hash: bytes) -> bytes:
    finished_key = hkdf_expand_label(traffic_secret, b"finished", b"", HASH_LENGTH)
    mac = hmac.HMAC(finished_key, hashes.SHA256())
    mac.update(transcript_hash)
    return mac.finalize()


def certificate_verify_content(transcript_hash: bytes, *, server: bool) -> bytes:
    """What a CertificateVerify signs (RFC 8446 4.4.3)."""
    role = b"server" if server else b"client"
    return b"\x20" * 64 + b"TLS 1.3, " + role + b" CertificateVerify\x00" + transcript_hash


class Transcript:
    """The running transcript hash of the handshake messages (headers included)."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashes.Hash(hashes.SHA256())

    def add(self, message: bytes) -> None:
        self._hash.update(message)

    def digest(self) -> bytes:
        return self._hash.copy().finalize()

    def restart_for_retry(self) -> None:
        """Replace ClientHello1 (the only message so far) by message_hash (RFC 8446 4.4.1)."""
        client_hello_hash = self.digest()
        self._hash = hashes.Hash(hashes.SHA256())
        self._hash.update(bytes([_MESSAGE_HASH, 0, 0, HASH_LENGTH]) + client_hello_hash)

    def __repr__(self) -> str:
        return "Transcript()"


class KeySchedule:
    """The secrets of one connection, derived stage by stage (no PSK)."""

    __slots__ = (
        "_handshake_secret",
        "client_application",
        "client_handshake",
        "server_application",
        "server_handshake",
    )

    def __init__(self, shared_secret: bytes, hello_hash: bytes) -> None:
        """Derive the handshake traffic secrets from the (EC)DHE secret and H(CH..SH)."""
        early = hkdf_extract(_ZEROS, _ZEROS)
        self._handshake_secret = hkdf_extract(
            derive_secret(early, b"derived", empty_hash()), shared_secret
        )
        self.client_handshake = derive_secret(self._handshake_secret, b"c hs traffic", hello_hash)
        self.server_handshake = derive_secret(self._handshake_secret, b"s hs traffic", hello_hash)
        self.client_application = b""
        self.server_application = b""

    def derive_application(self, server_finished_hash: bytes) -> None:
        """Derive the application traffic secrets from H(CH..server Finished)."""
        derived = derive_secret(self._handshake_secret, b"derived", empty_hash())
        master = hkdf_extract(derived, _ZEROS)
        self.client_application = derive_secret(master, b"c ap traffic", server_finished_hash)
        self.server_application = derive_secret(master, b"s ap traffic", server_finished_hash)
        self._handshake_secret = b""  # no later stage needs it (no resumption, no exporter)

    def forget_handshake(self) -> None:
        self.client_handshake = b""
        self.server_handshake = b""

    def __repr__(self) -> str:
        return "KeySchedule(<secrets hidden>)"
