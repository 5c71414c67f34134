"""The lock's outbound connection to its key server: a thin asyncio shell.

``LockSyncSession`` decides; this owns the WebSocket, the store and the clock.
It dials ``sync.url`` (through NATs and proxies: one TCP connection the lock
opened), applies revocation lists, uploads audit rows after the server's
cursor and moves the delivery watermark when they are acknowledged, and keeps
the measured clock offset where the policy sees it. A lost connection is
dialled again with exponential backoff and jitter (so ten thousand locks do
not come back in one instant after a key-server restart); meanwhile the lock
works offline with the last list it holds.

What it knows is written to ``sync-status.json`` in the data directory, for
``elock-lock status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from elock_common import LockSecret
from elock_common.lock_sync import MAX_AUDIT_ROWS, MAX_MESSAGE, AuditRow, Refused, encode
from lock_server import metrics
from lock_server.config import SyncConfig
from lock_server.service import LockService
from lock_server.store import LockStore
from lock_server.sync_session import (
    AuditAcked,
    ClockMeasured,
    Closed,
    Event,
    LockSyncSession,
    RevocationsReceived,
    Synced,
)

log = logging.getLogger(__name__)

STATUS_FILE = "sync-status.json"
RECONNECT_BASE = 0.5
CONNECT_TIMEOUT = 10.0


@dataclass
class SyncStatus:
    """What ``elock-lock status`` shows about the sync channel."""

    url: str
    connected: bool = False
    in_sync: bool = False
    last_sync_at: float | None = None  # last time the key server answered
    revocation_version: int = 0
    server_version: int | None = None
    clock_offset: float | None = None  # the key server's clock minus ours
    audit_delivered_through: int = 0
    last_error: str | None = None

    def save(self, data_dir: Path) -> None:
        tmp = data_dir / (STATUS_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, data_dir / STATUS_FILE)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads((data_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


class SyncClient:
    def __init__(
        self,
        config: SyncConfig,
        secret: LockSecret,
        store: LockStore,
        service: LockService,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._tls = config.tls_context()
        self._sync_key = secret.derive_sync_key()
        self._store = store
        self._service = service
        self._data_dir = data_dir
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng
        self._audit_log = store.audit_log_id
        self.in_sync = asyncio.Event()  # set once the lock holds the server's list
        self._nudge = asyncio.Event()
        self._stopped = False
        self._ws: ClientConnection | None = None
        self.status = SyncStatus(config.url, revocation_version=store.revocation_version)
        self.status.audit_delivered_through = store.audit_delivered_through()
        self._save()

    def nudge(self) -> None:
        """A new audit row: upload it now (safe from the event loop's thread only)."""
        self._nudge.set()

    def stop(self) -> None:
        """End the connection and the dialling, without relying on cancellation alone
        (Python 3.11's ``wait_for`` can swallow a cancel that races an answer)."""
        self._stopped = True
        self._nudge.set()
        if self._ws is not None:
            self._ws.transport.abort()

    async def run(self) -> None:
        """Dial, sync, and dial again when the connection ends; until stopped."""
        failures = 0
        while not self._stopped:
            authenticated = False
            try:
                authenticated = await self._connection()
            except (OSError, WebSocketException, TimeoutError) as exc:
                self._offline(_unreachable(exc, self._config.ca_file))
            except Exception as exc:  # a bug must not end the sync for good, silently
                log.exception("sync: unexpected error; dialling again")
                self._offline(f"unexpected error: {_describe(exc)}")
            failures = 0 if authenticated else failures + 1
            delay = min(self._config.reconnect_max_seconds, RECONNECT_BASE * 2 ** min(failures, 16))
            delay *= 0.5 + self._rng()  # jitter: locks that lost one server spread out
            log.info("sync: dialling again in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _connection(self) -> bool:
        session = LockSyncSession(
            self._config.lock_id,
            self._sync_key,
            revocation_version=self._store.revocation_version,
            audit_log=self._audit_log,
            max_clock_skew=self._config.max_clock_skew_seconds,
            ping_seconds=self._config.ping_seconds,
            pong_timeout=max(2.0, self._config.ping_seconds),
        )
        tls: dict[str, Any] = {} if self._tls is None else {"ssl": self._tls}  # wss:// only
        async with connect(
            self._config.url,
            max_size=MAX_MESSAGE,
            ping_interval=None,  # the session pings, and measures the clock with it
            open_timeout=CONNECT_TIMEOUT,
            close_timeout=2,
            **tls,
        ) as ws:
            self._ws = ws
            if self._stopped:
                return False
            session.start(self._monotonic(), self._clock())
            await self._flush(ws, session)
            uploader = asyncio.create_task(self._uploads(ws, session))
            try:
                return await self._receive(ws, session)
            finally:
                self._ws = None
                uploader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await uploader

    async def _receive(self, ws: ClientConnection, session: LockSyncSession) -> bool:
        authenticated = False
        while not self._stopped:
            timer = session.get_timer()
            timeout = None if timer is None else max(0.0, timer - self._monotonic())
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout)
            except TimeoutError:
                events = session.handle_timer(self._monotonic(), self._clock())
            else:
                events = session.receive(frame, self._monotonic(), self._clock())
            for event in events:
                if isinstance(event, Synced) and event.audit_cursor > self._store.last_audit_id():
                    # The server stored rows this log does not have: it was restored from
                    # a backup (or its rows were renumbered). Name it anew and dial again,
                    # so no new row hides below the server's cursor.
                    self._audit_log = self._store.new_audit_log_id()
                    log.warning("sync: the key server holds audit rows up to %d, this log ends"
                                " at %d: it was restored; uploading it as a new log",
                                event.audit_cursor, self._store.last_audit_id())  # fmt: skip
                    return True
                if isinstance(event, Closed):
                    with contextlib.suppress(WebSocketException, OSError):
                        await ws.send(encode(Refused(event.reason[:300])))
                    self._offline(event.reason)
                    return authenticated
                authenticated |= isinstance(event, Synced)
                self._apply(event, session)
            await self._flush(ws, session)
        return authenticated

    def _apply(self, event: Event, session: LockSyncSession) -> None:
        status = self.status
        status.last_sync_at = self._clock()
        if isinstance(event, Synced):
            log.warning("sync: connected to %s", self._config.url)
            status.connected, status.last_error = True, None
            metrics.sync_state(True)
            status.server_version = event.revocation_version
            self._check_in_sync()
            self._nudge.set()
        elif isinstance(event, RevocationsReceived):
            held = self._store.replace_revocations(event.version, event.revoked)
            log.warning("sync: revocation list version %d (%d key(s)); holding %d",
                        event.version, len(event.revoked), held)  # fmt: skip
            status.server_version = event.version
            session.confirm(held)
            self._check_in_sync()
        elif isinstance(event, AuditAcked):
            self._store.mark_audit_delivered(event.through)
            status.audit_delivered_through = self._store.audit_delivered_through()
            self._nudge.set()
        elif isinstance(event, ClockMeasured):
            self._service.clock_measured(event.offset)
            status.clock_offset = round(event.offset, 3)
            metrics.clock_offset(event.offset)
        self._save()

    def _check_in_sync(self) -> None:
        self.status.revocation_version = held = self._store.revocation_version
        self.status.in_sync = held == self.status.server_version
        if self.status.in_sync:
            self.in_sync.set()

    async def _uploads(self, ws: ClientConnection, session: LockSyncSession) -> None:
        while True:
            await self._nudge.wait()
            self._nudge.clear()
            after = session.audit_after()
            if after is None:
                continue  # a batch is in flight; its ack nudges again
            rows = self._store.audit_rows(after, MAX_AUDIT_ROWS)
            if rows:
                session.upload([AuditRow.clipped(r.id, r.ts, r.key_id, r.peer, r.action,
                                                 r.outcome, r.reason) for r in rows])  # fmt: skip
                await self._flush(ws, session)

    async def _flush(self, ws: ClientConnection, session: LockSyncSession) -> None:
        for frame in session.data_to_send():
            await ws.send(frame)

    def _offline(self, reason: str) -> None:
        if self.status.connected or self.status.last_error != reason:
            log.warning("sync: offline, working with revocation list version %d: %s",
                        self._store.revocation_version, reason)  # fmt: skip
        self.status.connected, self.status.in_sync, self.status.last_error = False, False, reason
        metrics.sync_state(False)
        self._save()

    def _save(self) -> None:
        try:
            self.status.save(self._data_dir)
        except OSError as exc:  # a full disk must not end the sync
            log.warning("sync: cannot write %s: %s", STATUS_FILE, exc.strerror)


def _describe(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:200]


def _unreachable(exc: BaseException, ca_file: Path | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = f"the CA in sync.ca_file {ca_file}" if ca_file else "the system's trust store"
        return (f"the key server's certificate is not trusted by {trusted}:"
                f" {exc.verify_message or _describe(exc)}")  # fmt: skip
    return f"cannot reach the key server: {_describe(exc)}"
