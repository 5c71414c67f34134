"""The key identity: what a key claims, carried as its DTLS PSK identity.

The lock keeps no per-key table. A client presents an identity in the DTLS
handshake; the lock derives the PSK from its own secret and that identity
(``derive_psk``) and the handshake then proves the client knew that PSK. So
everything the lock must enforce lives in the identity itself, and the
handshake authenticates every bit of it: changing one bit changes the PSK.

Wire form: 24 bytes, base64url without padding, so exactly 32 printable ASCII
characters. That is the hard limit of the tinydtls build in DTLSSocket (33
bytes fail the handshake) and what libcoap's ``coap-client -u`` accepts.

Binary layout (big-endian)::

    offset size field
         0    1 format version (1)
         1    2 lock tag: which lock the key was minted for
         3    6 key id (random)
         9    4 not-before, Unix seconds (0: no lower bound)
        13    4 not-after, Unix seconds (0xFFFFFFFF: no upper bound)
        17    1 rights (bit 0 open, bit 1 admin)
        18    1 weekday mask (bit 0 Monday .. bit 6 Sunday; 0x7F every day)
        19    2 daily window start, minutes after local midnight (0..1439)
        21    2 daily window end, minutes after local midnight (1..1440)
        23    1 maximum uses (0 unlimited, 1 one-time, N an N-use key)
"""

from __future__ import annotations

import base64
import binascii
import enum
import struct
from dataclasses import dataclass, field

from elock_common.errors import IdentityFormatError

FORMAT_VERSION = 1
IDENTITY_BYTES = 24
IDENTITY_CHARS = 32
KEY_ID_BYTES = 6
NO_NOT_AFTER = 0xFFFFFFFF
EVERY_DAY = 0x7F
MINUTES_PER_DAY = 1440

_LAYOUT = struct.Struct(">B2s6sIIBBHHB")
assert _LAYOUT.size == IDENTITY_BYTES


class Rights(enum.IntFlag):
    """What a key may do at the lock."""

    OPEN = 0x01
    ADMIN = 0x02


_KNOWN_RIGHTS = int(Rights.OPEN | Rights.ADMIN)


@dataclass(frozen=True)
class KeyIdentity:
    """The claims of one key; immutable because a key is never edited in place."""

    lock_tag: bytes
    key_id: bytes
    not_before: int = 0
    not_after: int = NO_NOT_AFTER
    rights: Rights = Rights.OPEN
    weekdays: int = EVERY_DAY
    window_start: int = 0
    window_end: int = MINUTES_PER_DAY
    max_uses: int = 0
    version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        _check(self.version == FORMAT_VERSION, f"unsupported format version {self.version}")
        _check(len(self.lock_tag) == 2, "lock tag must be 2 bytes")
        _check(len(self.key_id) == KEY_ID_BYTES, f"key id must be {KEY_ID_BYTES} bytes")
        _check(0 <= self.not_before <= NO_NOT_AFTER, "not-before out of range")
        _check(0 <= self.not_after <= NO_NOT_AFTER, "not-after out of range")
        _check(self.not_before < self.not_after, "not-before must be earlier than not-after")
        _check(int(self.rights) & ~_KNOWN_RIGHTS == 0, "unknown rights bits")
        _check(self.rights != 0, "a key must carry at least one right")
        _check(0 < self.weekdays <= EVERY_DAY, "weekday mask must name at least one day")
        _check(
            0 <= self.window_start < self.window_end <= MINUTES_PER_DAY,
            "daily window must satisfy 0 <= start < end <= 1440",
        )
        _check(0 <= self.max_uses <= 255, "maximum uses must be 0..255")

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    @property
    def one_time(self) -> bool:
        return self.max_uses == 1

    @property
    def time_bounded(self) -> bool:
        return self.not_before != 0 or self.not_after != NO_NOT_AFTER

    def encode(self) -> bytes:
        """The 32-character ASCII identity, as bytes ready for DTLS."""
        raw = _LAYOUT.pack(
            self.version,
            self.lock_tag,
            self.key_id,
            self.not_before,
            self.not_after,
            int(self.rights),
            self.weekdays,
            self.window_start,
            self.window_end,
            self.max_uses,
        )
        return base64.urlsafe_b64encode(raw)

    @classmethod
    def decode(cls, text: bytes | str) -> KeyIdentity:
        """Parse an identity; any malformed input raises ``IdentityFormatError``."""
        data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        _check(len(data) == IDENTITY_CHARS, f"identity must be {IDENTITY_CHARS} characters")
        try:
            raw = base64.urlsafe_b64decode(data)
        except (binascii.Error, ValueError) as exc:
            raise IdentityFormatError("identity is not base64url") from exc
        # b64decode silently drops characters outside the alphabet; re-encoding
        # catches that, and also any non-canonical spelling of the same bytes.
        _check(base64.urlsafe_b64encode(raw) == data, "identity is not canonical base64url")
        # 32 characters with "=" padding are canonical too, and hold fewer bytes.
        _check(len(raw) == IDENTITY_BYTES, f"identity must hold {IDENTITY_BYTES} bytes")
        fields = _LAYOUT.unpack(raw)
        _check(fields[0] == FORMAT_VERSION, f"unsupported format version {fields[0]}")
        try:
            rights = Rights(fields[5])
        except ValueError as exc:
            raise IdentityFormatError("unknown rights bits") from exc
        return cls(
            version=fields[0],
            lock_tag=fields[1],
            key_id=fields[2],
            not_before=fields[3],
            not_after=fields[4],
            rights=rights,
            weekdays=fields[6],
            window_start=fields[7],
            window_end=fields[8],
            max_uses=fields[9],
        )


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise IdentityFormatError(reason)
