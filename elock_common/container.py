"""KeyContainers: what the card keeps per key, and how it is encoded.

A container holds one key (identity and PSK) and what the key host needs to
use it: a label for people, the lock's ``coaps://`` URI, the key's validity and
flags such as PIN-required. The TLV form (tags in ``elock_common.card_protocol``) is
what a key server sends inside a sealed PUT CONTAINER and what the store keeps;
``public_tlv`` is the LIST form and by construction has no PSK in it.

Standard library only, so the key server can import the encoder without the
applet. The PSK never appears in ``repr`` or in an error message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.errors import ContainerFormatError

MAX_CONTAINERS = 16
MAX_LABEL = 32
MAX_URI = 128
MAX_IDENTITY = 32  # tinydtls refuses longer PSK identities
MAX_PSK = 64
NO_NOT_AFTER = 0xFFFFFFFF

_FIELDS = (
    c.TAG_ID, c.TAG_LABEL, c.TAG_URI, c.TAG_IDENTITY, c.TAG_PSK,
    c.TAG_NOT_BEFORE, c.TAG_NOT_AFTER, c.TAG_FLAGS,
)  # fmt: skip


class Flags(enum.IntFlag):
    NONE = 0
    PIN_REQUIRED = 0x01


_KNOWN_FLAGS = int(Flags.PIN_REQUIRED)


@dataclass(frozen=True)
class KeyContainer:
    """One key in the card. ``container_id`` 0 means "let the card choose"."""

    container_id: int
    label: str
    uri: str
    identity: bytes
    psk: bytes = field(repr=False)
    not_before: int = 0
    not_after: int = NO_NOT_AFTER
    flags: Flags = Flags.NONE

    def __post_init__(self) -> None:
        _check(0 <= self.container_id <= MAX_CONTAINERS, "container id out of range")
        label = self.label.encode("utf-8", "replace")
        _check(len(label) <= MAX_LABEL, f"label longer than {MAX_LABEL} bytes")
        _check(all(ch.isprintable() for ch in self.label), "label has control characters")
        _check(_printable(self.uri.encode("ascii", "replace")), "URI must be printable ASCII")
        _check(
            self.uri.startswith("coaps://") and len(self.uri) <= MAX_URI,
            f"URI must be coaps:// and at most {MAX_URI} bytes",
        )
        _check(0 < len(self.identity) <= MAX_IDENTITY, f"identity must be 1..{MAX_IDENTITY} bytes")
        _check(_printable(self.identity), "identity must be printable ASCII")
        _check(0 < len(self.psk) <= MAX_PSK, f"PSK must be 1..{MAX_PSK} bytes")
        _check(_printable(self.psk), "PSK must be printable ASCII")
        _check(0 <= self.not_before < self.not_after <= NO_NOT_AFTER, "bad validity window")
        _check(int(self.flags) & ~_KNOWN_FLAGS == 0, "unknown flags")

    @property
    def pin_required(self) -> bool:
        return bool(self.flags & Flags.PIN_REQUIRED)

    def valid_at(self, unix_seconds: int) -> bool:
        """Advisory: the host supplies the time. The lock enforces the real policy."""
        return self.not_before <= unix_seconds <= self.not_after

    def with_id(self, container_id: int) -> KeyContainer:
        return KeyContainer(
            container_id, self.label, self.uri, self.identity, self.psk,
            self.not_before, self.not_after, self.flags,
        )  # fmt: skip

    def same_key(self, other: KeyContainer) -> bool:
        """Same identity and URI: a retried install of this key, not a new key."""
        return self.identity == other.identity and self.uri == other.uri

    def _public_items(self) -> list[tuple[int, bytes]]:
        return [
            (c.TAG_ID, bytes([self.container_id])),
            (c.TAG_LABEL, self.label.encode("utf-8")),
            (c.TAG_URI, self.uri.encode("ascii")),
            (c.TAG_IDENTITY, self.identity),
            (c.TAG_NOT_BEFORE, self.not_before.to_bytes(4, "big")),
            (c.TAG_NOT_AFTER, self.not_after.to_bytes(4, "big")),
            (c.TAG_FLAGS, bytes([int(self.flags)])),
        ]

    def public_tlv(self) -> bytes:
        """The LIST entry: everything but the PSK, wrapped in tag E1."""
        return tlv.encode(c.TAG_LIST_ENTRY, tlv.encode_all(self._public_items()))

    def to_tlv(self) -> bytes:
        """The full form, PSK included: for the store and for sealed installs only."""
        items = self._public_items()
        items.insert(4, (c.TAG_PSK, self.psk))
        return tlv.encode_all(items)

    @classmethod
    def from_tlv(cls, data: bytes, *, require_psk: bool = True) -> KeyContainer:
        """Parse the full form; any fault raises ``ContainerFormatError`` (6A80 in the applet)."""
        r = tlv.TlvReader(data, _FIELDS)
        try:
            return cls(
                container_id=r.uint(c.TAG_ID, 1, 0),
                label=r.required(c.TAG_LABEL).decode("utf-8"),
                uri=r.required(c.TAG_URI).decode("ascii"),
                identity=r.required(c.TAG_IDENTITY),
                psk=r.required(c.TAG_PSK) if require_psk else (r.optional(c.TAG_PSK) or b"-"),
                not_before=r.uint(c.TAG_NOT_BEFORE, 4, 0),
                not_after=r.uint(c.TAG_NOT_AFTER, 4, NO_NOT_AFTER),
                flags=Flags(r.uint(c.TAG_FLAGS, 1, 0)),
            )
        except UnicodeDecodeError:
            raise ContainerFormatError("label or URI is not valid text") from None

    @classmethod
    def from_public_tlv(cls, entry: bytes) -> KeyContainer:
        """Parse one LIST entry (tag E1 value); the PSK field reads as ``b"-"``."""
        return cls.from_tlv(entry, require_psk=False)


def parse_list(data: bytes) -> list[KeyContainer]:
    """The key host's side of LIST: every E1 entry of a LIST response."""
    out = []
    for tag, value in tlv.decode(data):
        if tag != c.TAG_LIST_ENTRY:
            raise ContainerFormatError("LIST response holds a foreign tag")
        out.append(KeyContainer.from_public_tlv(value))
    return out


def _printable(data: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in data)


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise ContainerFormatError(reason)
