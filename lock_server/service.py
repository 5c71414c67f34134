"""The lock's decisions with their side effects: policy, use counts, audit, door.

Resources call this; it never speaks CoAP, so the same rules serve every
transport and every test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elock_common import KeyIdentity, Rights
from lock_server import metrics
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

    def try_open(self, claims: KeyIdentity, peer: str) -> Refusal | None:
        """Open the door if the key may; the audit row is written either way."""
        key_id = claims.key_id_hex
        refusal = check_key(
            claims,
            need=Rights.OPEN,
            now=self.clock(),
            zone=self.config.zone,
            revoked=self.store.is_revoked(key_id),
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
        metrics.open_decided(refusal)
        if refusal is None:
            log.info("open granted to key %s from %s", key_id, peer, extra=self._fields(
                key_id, "open", "granted", "opened"))  # fmt: skip
            self.door.open()
        else:
            log.info("open refused to key %s from %s: %s", key_id, peer, refusal.reason,
                     extra=self._fields(key_id, "open", "refused", refusal.reason))  # fmt: skip
        return refusal

    def _fields(self, key_id: str | None, action: str, outcome: str, reason: str) -> dict[str, Any]:
        """The fields of a ``--log-format json`` line (``elock_common.logfmt``)."""
        return {"lock": self.config.name, "key_id": key_id, "action": action,
                "outcome": outcome, "reason": reason}  # fmt: skip

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
        log.warning("%s refused to key %s from %s: %s", action, key_id, peer, reason,
                    extra=self._fields(key_id, action, "refused", reason))  # fmt: skip
        metrics.refused(action, reason)
        self.store.audit(key_id=key_id, peer=peer, action=action, granted=False, reason=reason)

    def record_admin(self, claims: KeyIdentity, peer: str, action: str, reason: str) -> None:
        self.store.audit(
            key_id=claims.key_id_hex, peer=peer, action=action, granted=True, reason=reason
        )
