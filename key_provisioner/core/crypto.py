"""Sealing lock secrets at rest, and API token hashing.

A lock secret is sealed with AES-256-GCM under the master key. The lock's id
is the associated data, so a sealed secret copied onto another lock's row does
not open. The blob starts with a format byte and a 4-byte master-key
fingerprint: a wrong master key is reported as such, not as a damaged row.

API tokens are 32 random bytes; the database keeps only their SHA-256, looked
up by hash (so no comparison of secrets happens in Python at all).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from elock_common import LockSecret, LockSecretError
from key_provisioner.core.errors import ConfigError, SecretUnavailableError

MASTER_KEY_BYTES = 32
_SEAL_FORMAT = 1
_NONCE_BYTES = 12
_FINGERPRINT_LABEL = b"elock/keyserver/master-key-id\x00"
_AAD_LABEL = b"elock/keyserver/lock-secret/v1\x00"
TOKEN_PREFIX = "elk_"


class MasterKey:
    """The 32-byte key that seals lock secrets; never printed, never logged."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigError(f"the master key must be {MASTER_KEY_BYTES} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(MASTER_KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> MasterKey:
        """Parse base64url (padding optional); ``source`` names where it came from."""
        stripped = text.strip()
        try:
            key = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"{source} must hold {MASTER_KEY_BYTES} random bytes as base64url"
                " (make one with `elock-keyserver master-key`)"
            )
        return cls(key)

    def to_text(self) -> str:
        return base64.urlsafe_b64encode(self._key).rstrip(b"=").decode("ascii")

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(_FINGERPRINT_LABEL + self._key).digest()[:4]

    def aead(self) -> AESGCM:
        return AESGCM(self._key)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"


class SecretBox:
    """Seals and opens lock secrets for one master key."""

    def __init__(self, master: MasterKey) -> None:
        self._aead = master.aead()
        self._fingerprint = master.fingerprint

    def seal(self, secret: LockSecret, lock_id: uuid.UUID) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = secret.to_text().encode("ascii")
        sealed = self._aead.encrypt(nonce, plain, _aad(lock_id))
        return bytes([_SEAL_FORMAT]) + self._fingerprint + nonce + sealed

    def open(self, blob: bytes, lock_id: uuid.UUID) -> LockSecret:
        if len(blob) < 1 + 4 + _NONCE_BYTES + 16 or blob[0] != _SEAL_FORMAT:
            raise SecretUnavailableError(f"the sealed secret of lock {lock_id} is damaged")
        if blob[1:5] != self._fingerprint:
            raise SecretUnavailableError(
                f"the secret of lock {lock_id} was sealed under another master key"
            )
        nonce, sealed = blob[5 : 5 + _NONCE_BYTES], blob[5 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(lock_id))
            return LockSecret.from_text(plain.decode("ascii"))
        except (InvalidTag, UnicodeDecodeError, LockSecretError):
            raise SecretUnavailableError(
                f"the sealed secret of lock {lock_id} is damaged"
            ) from None


def _aad(lock_id: uuid.UUID) -> bytes:
    return _AAD_LABEL + lock_id.bytes


def new_api_token() -> tuple[str, bytes]:
    """A fresh token (shown once) and the hash the database keeps."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_api_token(token)


def hash_api_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()
