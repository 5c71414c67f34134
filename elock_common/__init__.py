"""Formats every eLock part agrees on: key identities, lock secrets, PSK derivation.

Standard library only, so the lock on a Raspberry Pi, the applet, the key host
and the key server can all import it without each other's dependencies.
"""

from elock_common.errors import FormatError, IdentityFormatError, LockSecretError
from elock_common.identity import KeyIdentity, Rights
from elock_common.keys import mint_key
from elock_common.lock_secret import LockSecret, MintedKey

__all__ = [
    "FormatError",
    "IdentityFormatError",
    "KeyIdentity",
    "LockSecret",
    "LockSecretError",
    "MintedKey",
    "Rights",
    "mint_key",
]
