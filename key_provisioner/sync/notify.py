"""Wake the connection that holds a lock when its list changes, in whichever process.

Any transaction that changes a lock's ``revocation_version`` (a revoke, a
retire, a push requested by an admin) or retires it is seen by a session hook.
On PostgreSQL the hook adds ``pg_notify('elock_lock_sync', lock_id)`` to that
transaction, so the notification leaves at commit and never for a rollback;
every key-server process LISTENs on a connection of its own and wakes its
connections for that lock. In the process that committed (and on SQLite,
where there is one database file and usually one process) the hook also wakes
them directly after the commit. No broker: the database the processes
already share carries it.

Behind both, each process sweeps once in a while for the locks it holds whose
list is not confirmed (one query for the whole process, not one per
connection: 10,000 connections each asking every 15 s were 667 queries a
second, and a revoke's delivery queued behind them). On SQLite, where no
wake-up crosses processes (several uvicorn workers), the sweep is what carries
a revoke answered by another process, so it runs every half second there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

import psycopg
from sqlalchemy import Engine, event, inspect, or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from key_provisioner.db.models import Lock

log = logging.getLogger(__name__)

CHANNEL = "elock_lock_sync"
_CHANGED = "elock_locks_changed"
SWEEP_SQLITE = 0.5  # seconds: a revoke reaches a lock within 1 s on SQLite too
SWEEP_POSTGRESQL = 15.0  # seconds: NOTIFY wakes it at once; this only covers a lost one


class Gate:
    """The per-process bounds on sync connections and handshakes in progress."""

    def __init__(self) -> None:
        self.connections = 0
        self.handshakes = 0


class LockNotifier:
    """Per process: which connections wait on which lock, and how they are woken."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: threading.Thread | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stop = threading.Event()

    def subscribe(self, lock_id: str) -> asyncio.Event:
        woken = asyncio.Event()
        self._waiters.setdefault(lock_id, set()).add(woken)
        return woken

    def unsubscribe(self, lock_id: str, woken: asyncio.Event) -> None:
        waiting = self._waiters.get(lock_id)
        if waiting is not None:
            waiting.discard(woken)
            if not waiting:
                del self._waiters[lock_id]

    def wake(self, lock_ids: Iterable[str]) -> None:
        """Safe from any thread."""
        loop = self._loop
        ids = list(lock_ids)
        if loop is None or loop.is_closed() or not ids:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake_now, ids)

    def _wake_now(self, ids: list[str]) -> None:
        for lock_id in ids:
            for woken in self._waiters.get(lock_id, ()):
                woken.set()

    def install(self, sessions: sessionmaker[Session]) -> None:
        """Watch every session this factory makes."""
        event.listen(sessions, "after_flush", self._after_flush)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def _after_flush(self, session: Session, _context: Any) -> None:
        changed = [
            str(obj.id)
            for obj in session.dirty
            if isinstance(obj, Lock)
            and any(
                inspect(obj).attrs[name].history.has_changes()
                for name in ("revocation_version", "retired_at", "sync_session")
            )
        ]
        if not changed:
            return
        session.info.setdefault(_CHANGED, set()).update(changed)
        if session.get_bind().dialect.name == "postgresql":
            connection = session.connection()
            for lock_id in changed:
                connection.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": lock_id})

    def _after_commit(self, session: Session) -> None:
        self.wake(session.info.pop(_CHANGED, ()))

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_CHANGED, None)

    # -- the process's listener ----------------------------------------------------

    def start(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._loop = asyncio.get_running_loop()
        url = make_url(engine.url)
        postgresql = url.get_backend_name() == "postgresql"
        interval = SWEEP_POSTGRESQL if postgresql else SWEEP_SQLITE
        self._sweeper = asyncio.ensure_future(self._sweep_every(sessions, interval))
        if not postgresql:
            return
        self._stop.clear()
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._listener = threading.Thread(
            target=self._listen, args=(conninfo,), name="elock-lock-sync-listen", daemon=True
        )
        self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._listener is not None:
            self._listener.join(5)
            self._listener = None
        self._loop = None

    def _listen(self, conninfo: str) -> None:
        """LISTEN, and wake on each notification; reconnect if the database goes away."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        # each as it comes (the generator ends after 0.5 s of silence,
                        # so a stop is seen in time)
                        for notification in conn.notifies(timeout=0.5):
                            self.wake([notification.payload])
            except psycopg.Error as exc:
                log.warning("lock sync: LISTEN connection lost (%s); again in 1 s", exc)
                self._stop.wait(1.0)

    # -- the process's sweep ---------------------------------------------------------

    async def _sweep_every(self, sessions: sessionmaker[Session], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self._waiters:
                continue
            try:
                due = await asyncio.to_thread(self._due, sessions)
            except Exception as exc:  # the database is away: the next sweep tries again
                log.warning("lock sync: sweep failed (%s)", type(exc).__name__)
                continue
            self._wake_now([lock_id for lock_id in due if lock_id in self._waiters])

    @staticmethod
    def _due(sessions: sessionmaker[Session]) -> list[str]:
        """Connected locks whose list is unconfirmed or that were retired: few, in a
        steady state, whatever the number of connected locks."""
        query = select(Lock.id).where(
            Lock.sync_session.is_not(None),
            or_(Lock.revocation_version != Lock.confirmed_version, Lock.retired_at.is_not(None)),
        )
        with sessions() as session:
            return [str(lock_id) for lock_id in session.scalars(query)]
