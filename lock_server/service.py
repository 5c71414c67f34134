"""The lock's decisions with their side effects: policy, use counts, audit, door.

Resources call this; it never speaks CoAP, so the same rules serve every
transport and every test.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    # The key server's clock minus ours, from the sync channel (None: never measured).
    clock_offset: float | None = None
    max_clock_skew: float = math.inf
    # Told after every audit row (the sync client uploads it).
    audit_listener: Callable[[], None] | None = None

    def try_open(self, claims: KeyIdentity, peer: str) -> Refusal | None:
        """Open the door if the key may; the audit row is written either way."""
        key_id = claims.key_id_hex
        refusal = check_key(
            claims,
            need=Rights.OPEN,
            now=self.clock(),
            zone=self.config.zone,
            revoked=self.store.is_revoked(key_id),
            clock_offset=self.clock_offset,
            max_clock_skew=self.max_clock_skew,
        )
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
        self._audited()
        if refusal is None:
            log.info("open granted to key %s from %s", key_id, peer)
            self.door.open()
        else:
            log.info("open refused to key %s from %s: %s", key_id, peer, refusal.reason)
        return refusal

    def check(self, claims: KeyIdentity, need: Rights) -> Refusal | None:
        """Validity, revocation and rights, without spending a use (reads, admin)."""
        return check_key(
            claims,
            need=need,
            now=self.clock(),
            zone=self.config.zone,
            revoked=self.store.is_revoked(claims.key_id_hex),
            clock_offset=self.clock_offset,
            max_clock_skew=self.max_clock_skew,
        )

    def record_refusal(self, peer: str, key_id: str | None, action: str, reason: str) -> None:
        log.warning("%s refused to key %s from %s: %s", action, key_id, peer, reason)
        self.store.audit(key_id=key_id, peer=peer, action=action, granted=False, reason=reason)
        self._audited()

    def record_admin(self, claims: KeyIdentity, peer: str, action: str, reason: str) -> None:
        self.store.audit(
            key_id=claims.key_id_hex, peer=peer, action=action, granted=True, reason=reason
        )
        self._audited()

    def _audited(self) -> None:
        if self.audit_listener is not None:
            self.audit_listener()
