"""Audit rows written by a thread of their own, so no fsync runs on the event loop.

Every audit commit waits for the disk (``synchronous=FULL``); on an SD card
that is milliseconds, and the event loop also carries every handshake and
every open. So the loop only queues a row; this thread commits queued rows in
batches (one fsync per batch) on its own SQLite connection, and pruning runs
here too. A row about a key that proved itself is awaited (``commit``): the
request waits for the disk, the loop does not. An unauthenticated refusal is
queued and forgotten (``audit``): one still queued when the process is killed
is lost (the window is one batch, milliseconds), and a full queue drops rows
and writes how many instead of growing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

from lock_server.store import AuditEntry, LockStore

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # rows; a full queue drops rows (and says how many) rather than grow
MAX_BATCH = 500
_STOP = object()


class AuditWriter:
    def __init__(self, path: Path, *, max_rows: int | None = None) -> None:
        self._path = path
        self._max_rows = max_rows
        self._queue: queue.Queue[object] = queue.Queue()  # bounded in ``audit``
        self._dropped = 0
        self._prune_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def audit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None:  # fmt: skip
        """Queue one row and return at once (unauthenticated refusals)."""
        if self._queue.qsize() >= MAX_QUEUED:
            self._dropped += 1
            return
        self._queue.put((_entry(key_id, peer, action, granted, reason, ts), None))

    async def commit(
        self, *, key_id: str | None, peer: str, action: str, granted: bool, reason: str,
        ts: float | None = None,
    ) -> None:  # fmt: skip
        """Queue one row and wait until it is on disk, without blocking the loop."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((_entry(key_id, peer, action, granted, reason, ts), done))
        await asyncio.wrap_future(done)

    def request_prune(self) -> None:
        self._prune_requested.set()
        self._queue.put(None)  # wake the thread

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row queued so far is committed (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(10)

    def _run(self) -> None:
        store = LockStore(self._path)  # its own connection, used by this thread only
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < MAX_BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                queued = [item for item in items if isinstance(item, tuple)]
                error = self._commit(store, [row for row, _ in queued])
                for _, waiter in queued:
                    if waiter is not None and not waiter.cancelled():
                        if error is None:
                            waiter.set_result(None)
                        else:
                            waiter.set_exception(error)
                if self._prune_requested.is_set():
                    self._prune_requested.clear()
                    self._prune(store)
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
                if _STOP in items:
                    return
        finally:
            store.close()

    def _commit(self, store: LockStore, rows: list[AuditEntry]) -> sqlite3.Error | None:
        dropped, self._dropped = self._dropped, 0
        if dropped:
            rows.append((time.time(), None, "-", "audit", "refused",
                         f"{dropped} audit row(s) dropped: the writer fell behind"))  # fmt: skip
        if not rows:
            return None
        try:
            store.append_audit(rows)
        except sqlite3.Error as exc:
            log.error("cannot write %d audit row(s): %s", len(rows), exc)
            return exc
        return None

    def _prune(self, store: LockStore) -> None:
        if self._max_rows is None:
            return
        try:
            result = store.prune_audit(self._max_rows)
        except sqlite3.Error as exc:
            log.error("cannot prune the audit log: %s", exc)
            return
        if result.deleted:
            log.info("audit pruned: %d row(s) deleted, %d kept", result.deleted, result.kept)
        if result.kept > result.limit:
            log.warning(
                "audit log holds %d rows (limit %d): %d not yet confirmed by the key server",
                result.kept, result.limit, result.undelivered,
            )  # fmt: skip


def _entry(
    key_id: str | None, peer: str, action: str, granted: bool, reason: str, ts: float | None
) -> AuditEntry:
    when = time.time() if ts is None else ts
    return (when, key_id, peer, action, "granted" if granted else "refused", reason)
