"""The lock's decisions with their side effects: policy, use counts, audit, door.

Resources call this; it never speaks CoAP, so the same rules serve every
transport and every test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from elock_common import KeyIdentity, Rights
from lock_server.config import LockConfig
from lock_server.door import Door
from lock_server.policy import Refusal, check_key, uses_exhausted
from lock_server.store import LockStore

log = logging.getLogger(__name__)


@dataclass
class LockService:
    config: LockConfig
    store: LockStore
    door: Door
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    # key id -> when its last granted open began; only while the door is open.
    _opened_at: dict[str, float] = field(default_factory=dict, repr=False)

    def try_open(self, claims: KeyIdentity, peer: str) -> Refusal | None:
        """Open the door if the key may; the audit row is written either way.

        A key that taps again while the door is still open from its own last
        open (its holder was told "no answer" and tried again) gets "opened"
        without a second use, audit row or relay write: one open, as the person
        meant it.
        The policy is checked again all the same, so a revocation in between wins.
        """
        key_id = claims.key_id_hex
        refusal = check_key(
            claims,
            need=Rights.OPEN,
            now=self.clock(),
            zone=self.config.zone,
            revoked=self.store.is_revoked(key_id),
        )
        if refusal is None and self._repeat(key_id):
            log.info("open repeated by key %s from %s within the open time", key_id, peer)
            return None  # the door is open from this key's first tap: nothing to move
        if (
            refusal is None
            and claims.max_uses
            and not self.store.consume_use(key_id, claims.max_uses)
        ):
            refusal = uses_exhausted(claims)
        self.store.audit(
            key_id=key_id,
            peer=peer,
            action="open",
            granted=refusal is None,
            reason="opened" if refusal is None else refusal.reason,
        )
        if refusal is None:
            log.info("open granted to key %s from %s", key_id, peer)
            self._opened_at = {key_id: self.monotonic()}  # the door is one key's at a time
            self.door.open()
        else:
            log.info("open refused to key %s from %s: %s", key_id, peer, refusal.reason)
        return refusal

    def _repeat(self, key_id: str) -> bool:
        began = self._opened_at.get(key_id)
        if began is None or not self.door.is_open:
            return False
        return self.monotonic() - began < self.door.open_seconds

    def check(self, claims: KeyIdentity, need: Rights) -> Refusal | None:
        """Validity, revocation and rights, without spending a use (reads, admin)."""
        return check_key(
            claims,
            need=need,
            now=self.clock(),
            zone=self.config.zone,
            revoked=self.store.is_revoked(claims.key_id_hex),
        )

    def record_refusal(self, peer: str, key_id: str | None, action: str, reason: str) -> None:
        log.warning("%s refused to key %s from %s: %s", action, key_id, peer, reason)
        self.store.audit(key_id=key_id, peer=peer, action=action, granted=False, reason=reason)

    def record_admin(self, claims: KeyIdentity, peer: str, action: str, reason: str) -> None:
        self.store.audit(
            key_id=claims.key_id_hex, peer=peer, action=action, granted=True, reason=reason
        )
