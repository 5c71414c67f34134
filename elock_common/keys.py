"""Minting keys: the one place where identities get their random key id."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from elock_common.identity import (
    EVERY_DAY,
    KEY_ID_BYTES,
    MINUTES_PER_DAY,
    NO_NOT_AFTER,
    KeyIdentity,
    Rights,
)
from elock_common.lock_secret import LockSecret, MintedKey


def mint_key(
    secret: LockSecret,
    *,
    rights: Rights = Rights.OPEN,
    not_before: int = 0,
    not_after: int = NO_NOT_AFTER,
    weekdays: int = EVERY_DAY,
    window_start: int = 0,
    window_end: int = MINUTES_PER_DAY,
    max_uses: int = 0,
    rng: Callable[[int], bytes] = secrets.token_bytes,
) -> tuple[KeyIdentity, MintedKey]:
    """Make a fresh key for the lock that owns ``secret``."""
    claims = KeyIdentity(
        lock_tag=secret.lock_tag,
        key_id=rng(KEY_ID_BYTES),
        not_before=not_before,
        not_after=not_after,
        rights=rights,
        weekdays=weekdays,
        window_start=window_start,
        window_end=window_end,
        max_uses=max_uses,
    )
    identity = claims.encode()
    return claims, MintedKey(identity=identity, psk=secret.derive_psk(identity))
