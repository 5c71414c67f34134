"""The lock's decisions with their side effects: policy, use counts, audit, door.

Resources call this; it never speaks CoAP, so the same rules serve every
transport and every test. Audit rows go through ``audit`` (a writer thread in
``serve``); refusals of peers that proved no key go through ``refusals`` first,
which writes a few and counts the rest (see ``lock_server.refusals``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from elock_common import KeyIdentity, Rights
from lock_server import metrics
from lock_server.config import LockConfig
from lock_server.door import Door
from lock_server.policy import Refusal, check_key, uses_exhausted
from lock_server.refusals import RefusalDigest, RefusalRow
from lock_server.store import LockStore

log = logging.getLogger(__name__)

# The key server's time is written to the store when it moved this far since the last
# write (seconds): a restart then knows it to within this, at one write per 10 minutes.
CLOCK_FLOOR_STEP = 600.0


class AuditSink(Protocol):
    """Where audit rows go (``AuditWriter``): queued (``audit``) or awaited (``commit``)."""

    def audit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None: ...  # fmt: skip

    async def commit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None: ...  # fmt: skip


class _StoreSink:
    """Rows straight into the store, on the caller's thread (tests, tools)."""

    def __init__(self, store: LockStore) -> None:
        self._store = store

    def audit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None:  # fmt: skip
        self._store.audit(key_id=key_id, peer=peer, action=action, granted=granted,
                          reason=reason, ts=ts)  # fmt: skip

    async def commit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None:  # fmt: skip
        self.audit(key_id=key_id, peer=peer, action=action, granted=granted, reason=reason, ts=ts)


@dataclass
class LockService:
    config: LockConfig
    store: LockStore
    door: Door
    clock: Callable[[], float] = time.time
    audit: AuditSink | None = None  # None: straight into ``store``
    refusals: RefusalDigest = field(default_factory=RefusalDigest)
    monotonic: Callable[[], float] = time.monotonic
    # key id -> when its last granted open began; only while the door is open.
    _opened_at: dict[str, float] = field(default_factory=dict, repr=False)
    # The key server's clock at the last measurement on the sync channel, and our
    # monotonic clock then (None: never measured); see ``clock_offset``.
    _server_clock: tuple[float, float] | None = field(default=None, repr=False)
    max_clock_skew: float = math.inf
    # Told after every audit row (the sync client uploads it).
    audit_listener: Callable[[], None] | None = None
    # The latest key-server time measured in any run (store), for ``clock_offset``.
    _clock_floor: float = field(default=0.0, repr=False)
    # One open decided at a time: a request the link held back and the retry tap's
    # request can land within one audit commit, and both passed ``_repeat`` (two
    # uses, two relay pulses) before the first had marked the door as its own.
    _deciding: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.audit is None:
            self.audit = _StoreSink(self.store)
        self._clock_floor = float(self.store.server_clock_floor())

    async def try_open(self, claims: KeyIdentity, peer: str) -> Refusal | None:
        """Open the door if the key may; the audit row is on disk first, either way.

        A key that taps again while the door is still open from its own last
        open (its holder was told "no answer" and tried again) gets "opened"
        without a second use, audit row or relay write: one open, as the person
        meant it.
        The policy is checked again all the same, so a revocation in between wins.
        """
        async with self._deciding:
            return await self._decide_open(claims, peer)

    async def _decide_open(self, claims: KeyIdentity, peer: str) -> Refusal | None:
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
        if refusal is None and self._repeat(key_id):
            log.info("open repeated by key %s from %s within the open time", key_id, peer)
            return None  # the door is open from this key's first tap: nothing to move
        if (
            refusal is None
            and claims.max_uses
            and not self.store.consume_use(key_id, claims.max_uses)
        ):
            refusal = uses_exhausted(claims)
        assert self.audit is not None  # set in __post_init__
        await self.audit.commit(
            key_id=key_id,
            peer=peer,
            action="open",
            granted=refusal is None,
            reason="opened" if refusal is None else refusal.reason,
        )
        metrics.open_decided(refusal)
        self._audited()
        if refusal is None:
            log.info("open granted to key %s from %s", key_id, peer, extra=self._fields(
                key_id, "open", "granted", "opened"))  # fmt: skip
            self._opened_at = {key_id: self.monotonic()}  # the door is one key's at a time
            self.door.open()
        else:
            log.info("open refused to key %s from %s: %s", key_id, peer, refusal.reason,
                     extra=self._fields(key_id, "open", "refused", refusal.reason))  # fmt: skip
        return refusal

    def clock_measured(self, offset: float) -> None:
        """The sync channel measured the key server's clock minus ours just now."""
        server_now = self.clock() + offset
        self._server_clock = (server_now, self.monotonic())
        if server_now >= self._clock_floor + CLOCK_FLOOR_STEP:  # not a write per pong
            self._clock_floor = float(self.store.raise_server_clock_floor(int(server_now)))

    @property
    def clock_offset(self) -> float | None:
        """The key server's clock minus ours now (None: never measured).

        Not the offset as last measured: the key server's clock is carried forward
        from the last measurement on the monotonic clock, which no settimeofday or
        NTP step moves. So a wall clock stepped back (or forward) after the last pong
        shows at once as a clock off the key server's, also while the key server is
        out of reach; with the offset as measured, a step while offline went unseen
        and an expired key opened again.

        Before the first measurement of this run, the latest key-server time any run
        measured (kept in the store) is a floor: a clock behind it is at least that far
        behind the key server's, which catches a step back followed by a restart while
        the key server is out of reach. A clock ahead of it says nothing (None).
        """
        if self._server_clock is not None:
            server_then, monotonic_then = self._server_clock
            return server_then + (self.monotonic() - monotonic_then) - self.clock()
        behind = self._clock_floor - self.clock()
        return behind if self._clock_floor and behind > 0 else None

    def _repeat(self, key_id: str) -> bool:
        began = self._opened_at.get(key_id)
        if began is None or not self.door.is_open:
            return False
        return self.monotonic() - began < self.door.open_seconds

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
            clock_offset=self.clock_offset,
            max_clock_skew=self.max_clock_skew,
        )

    async def record_refusal(self, peer: str, key_id: str | None, action: str, reason: str) -> None:
        """A refusal of a key that passed the handshake: one row and one log line each."""
        log.warning("%s refused to key %s from %s: %s", action, key_id, peer, reason,
                    extra=self._fields(key_id, action, "refused", reason))  # fmt: skip
        metrics.refused(action, reason)
        assert self.audit is not None  # set in __post_init__
        await self.audit.commit(
            key_id=key_id, peer=peer, action=action, granted=False, reason=reason
        )
        self._audited()

    def record_unauthenticated(
        self, peer: str, key_id: str | None, action: str, reason: str
    ) -> None:
        """A refusal of a peer that proved no key: counted, written only now and then."""
        metrics.refused(action, reason)  # every one counts, though few are written
        rows = self.refusals.record(
            self.clock(), peer=peer, key_id=key_id, action=action, reason=reason
        )
        self._write_refusals(rows)

    def flush_refusals(self, *, force: bool = False) -> None:
        """Write the summary rows of an ended period (``force``: end it now)."""
        now = self.clock()
        if force or self.refusals.due(now):
            self._write_refusals(self.refusals.flush(now))

    def _write_refusals(self, rows: list[RefusalRow]) -> None:
        for row in rows:
            log.warning("%s refused to key %s from %s: %s", row.action, row.key_id, row.peer,
                        row.reason)  # fmt: skip
            self._audit(key_id=row.key_id, peer=row.peer, action=row.action, granted=False,
                        reason=row.reason, ts=row.ts)  # fmt: skip

    async def record_admin(self, claims: KeyIdentity, peer: str, action: str, reason: str) -> None:
        assert self.audit is not None  # set in __post_init__
        await self.audit.commit(
            key_id=claims.key_id_hex, peer=peer, action=action, granted=True, reason=reason
        )
        self._audited()

    def _audit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None:  # fmt: skip
        assert self.audit is not None  # set in __post_init__
        self.audit.audit(key_id=key_id, peer=peer, action=action, granted=granted, reason=reason,
                         ts=ts)  # fmt: skip

    def _audited(self) -> None:
        if self.audit_listener is not None:
            self.audit_listener()
