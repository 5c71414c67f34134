"""The lock secret and key diversification.

``PSK = KDF(K_lock, identity)``: the lock derives any key's PSK from the
identity the client presents, so it needs no per-key table and keeps working
offline. The KDF is HMAC-SHA256 used as a PRF with a fixed label (the
single-block form of NIST SP 800-108), a primitive every secure element and
Java Card offers. The PSK is base64url so that standard CoAP tools, which take
the key as a plain string, can use an exported key unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from elock_common.errors import LockSecretError

SECRET_BYTES = 32
PSK_BYTES = 12  # 96 bits; 16 base64url characters (tinydtls caps PSKs at 16 bytes)
_PSK_LABEL = b"elock/v1/psk\x00"
_TAG_LABEL = b"elock/v1/lock-tag\x00"
_SYNC_LABEL = b"elock lock-sync v1\x00"


class LockSecret:
    """``K_lock``: 32 random bytes made by the key server when a lock is enrolled."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != SECRET_BYTES:
            raise LockSecretError(f"a lock secret is {SECRET_BYTES} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> LockSecret:
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def from_text(cls, text: str) -> LockSecret:
        """Parse the base64url form kept in a lock's config or bundle."""
        try:
            key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
        except (binascii.Error, ValueError) as exc:
            raise LockSecretError("a lock secret must be base64url") from exc
        return cls(key)

    def to_text(self) -> str:
        """The base64url form; the caller is responsible for where it goes."""
        return base64.urlsafe_b64encode(self._key).rstrip(b"=").decode("ascii")

    @property
    def lock_tag(self) -> bytes:
        """Two bytes that name this lock inside identities, derived so no table is needed.

        They let a lock tell "key for another lock" apart from "wrong PSK"; 16
        bits of a PRF output reveal nothing useful about the secret.
        """
        return hmac.digest(self._key, _TAG_LABEL, hashlib.sha256)[:2]

    def derive_psk(self, identity: bytes) -> bytes:
        """The PSK, as printable ASCII bytes, for the identity a client presented."""
        digest = hmac.digest(self._key, _PSK_LABEL + bytes(identity), hashlib.sha256)
        return base64.urlsafe_b64encode(digest[:PSK_BYTES])

    def derive_sync_key(self) -> bytes:
        """The key of the lock's outbound sync channel (``elock_common.lock_sync``).

        Its own label keeps it apart from every PSK: knowing the sync key opens no
        door, and no key holder can compute it.
        """
        return hmac.digest(self._key, _SYNC_LABEL, hashlib.sha256)

    def __repr__(self) -> str:
        return "LockSecret(<hidden>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LockSecret):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.lock_tag)


@dataclass(frozen=True)
class MintedKey:
    """An identity with its PSK, as handed to a secure element or a CoAP tool."""

    identity: bytes
    psk: bytes

    def __repr__(self) -> str:
        return f"MintedKey(identity={self.identity!r}, psk=<hidden>)"
