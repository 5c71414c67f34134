"""The fleet's state as gauges, read from the database when Prometheus scrapes.

Counting these in memory would be wrong twice over: each uvicorn worker and
each replica sees only the events it handled, and a restart forgets them. The
database holds the truth, so every scrape asks it (a few indexed aggregate
queries). Several replicas then export the *same* value for a lock; the alert
rules and the dashboard take ``max`` across instances, never ``sum``.

A lock is connected while it holds its ``/sync/lock`` connection (``Lock.sync_session``);
the clock offset it last reported over it is ``elock_keyserver_lock_clock_offset_seconds``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from key_provisioner.db.models import Key, Lock

log = logging.getLogger(__name__)

PER_LOCK = {
    "elock_keyserver_lock_revocation_versions_behind": "Revocation versions the lock has not"
    " confirmed yet (server's version minus the lock's confirmed one).",
    "elock_keyserver_lock_revocation_unconfirmed_seconds": "Seconds since the oldest revoke"
    " the lock has not confirmed (0 when it holds the server's list).",
    "elock_keyserver_lock_last_seen_timestamp_seconds": "When the lock last answered the key"
    " server (Unix time; absent if never).",
    "elock_keyserver_lock_connected": "1 if the lock is connected to the key server now.",
    "elock_keyserver_lock_push_attempts": "Failed revocation pushes to the lock since its last"
    " confirmation.",
    "elock_keyserver_lock_clock_offset_seconds": "The lock's clock minus the key server's, as"
    " last measured (only once the sync channel measures it).",
}
FLEET = {
    "elock_keyserver_keys": "Keys by state (active, expired, revoked) and push state.",
    "elock_keyserver_locks": "Locks in service.",
    "elock_keyserver_locks_connected": "Locks in service that are connected now.",
    "elock_keyserver_database_up": "1 if the last scrape could read the database.",
}


class FleetCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterable[Metric]:
        """The families without samples: names known without a database round trip."""
        for name, text in {**FLEET, **PER_LOCK}.items():
            yield GaugeMetricFamily(name, text)

    def collect(self) -> Iterable[Metric]:
        try:
            with self._sessions() as session:
                families = list(self._read(session, dt.datetime.now(dt.UTC)))
        except Exception as exc:  # the scrape must answer, and say the database is down
            log.warning("metrics: cannot read the database: %s", exc.__class__.__name__)
            yield GaugeMetricFamily("elock_keyserver_database_up", FLEET[_UP], value=0)
            return
        yield from families
        yield GaugeMetricFamily("elock_keyserver_database_up", FLEET[_UP], value=1)

    def _read(self, session: Session, now: dt.datetime) -> Iterator[Metric]:
        yield self._keys(session, int(now.timestamp()))
        locks = session.execute(select(Lock).where(Lock.retired_at.is_(None))).scalars().all()
        oldest = _oldest_unconfirmed(session)
        per_lock = {name: GaugeMetricFamily(name, text, labels=["lock"]) for name, text in
                    PER_LOCK.items()}  # fmt: skip
        connected = 0
        for lock in locks:
            values = self._lock_values(lock, oldest.get(lock.id), now)
            connected += int(values["elock_keyserver_lock_connected"] or 0)
            for name, value in values.items():
                if value is not None:
                    per_lock[name].add_metric([lock.name], value)
        yield GaugeMetricFamily("elock_keyserver_locks", FLEET["elock_keyserver_locks"],
                                value=len(locks))  # fmt: skip
        yield GaugeMetricFamily(
            "elock_keyserver_locks_connected", FLEET["elock_keyserver_locks_connected"],
            value=connected,
        )  # fmt: skip
        yield from per_lock.values()

    @staticmethod
    def _keys(session: Session, now_unix: int) -> Metric:
        revoked = Key.revoked_at.is_not(None)
        expired = Key.not_after <= literal_column(str(int(now_unix)))
        rows = session.execute(
            select(revoked, expired, Key.push_state, func.count()).group_by(
                revoked, expired, Key.push_state
            )
        ).all()
        family = GaugeMetricFamily(
            "elock_keyserver_keys", FLEET["elock_keyserver_keys"], labels=["state", "push_state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for is_revoked, is_expired, push_state, count in rows:
            state = "revoked" if is_revoked else "expired" if is_expired else "active"
            counts[(state, push_state)] = counts.get((state, push_state), 0) + int(count)
        for (state, push_state), count in sorted(counts.items()):
            family.add_metric([state, push_state], count)
        return family

    def _lock_values(
        self, lock: Lock, oldest: dt.datetime | None, now: dt.datetime
    ) -> dict[str, float | None]:
        behind = max(0, lock.revocation_version - lock.confirmed_version)
        seen = lock.last_seen_at
        connected = lock.sync_session is not None  # it holds a /sync/lock connection now
        offset = lock.clock_offset
        unconfirmed = (now - oldest).total_seconds() if behind and oldest is not None else 0.0
        return {
            "elock_keyserver_lock_revocation_versions_behind": behind,
            "elock_keyserver_lock_revocation_unconfirmed_seconds": max(0.0, unconfirmed),
            "elock_keyserver_lock_last_seen_timestamp_seconds": seen.timestamp() if seen else None,
            "elock_keyserver_lock_connected": 1 if connected else 0,
            "elock_keyserver_lock_push_attempts": lock.push_attempts,
            "elock_keyserver_lock_clock_offset_seconds": None if offset is None else offset,
        }


_UP = "elock_keyserver_database_up"


def _oldest_unconfirmed(session: Session) -> dict[Any, dt.datetime]:
    """Per lock behind on its list: the revoke time of the oldest key it has not confirmed."""
    since = func.coalesce(Lock.confirmed_at, Lock.enrolled_at)
    rows = session.execute(
        select(Key.lock_id, func.min(Key.revoked_at))
        .join(Lock, Lock.id == Key.lock_id)
        .where(
            Lock.retired_at.is_(None),
            Lock.revocation_version > Lock.confirmed_version,
            Key.revoked_at.is_not(None),
            Key.revoked_at > since,
        )
        .group_by(Key.lock_id)
    ).all()
    return {lock_id: when for lock_id, when in rows if when is not None}
