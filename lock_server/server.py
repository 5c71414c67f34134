"""Running the lock: wire config, store, relay and CoAP together; stop fail-secure."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

import aiocoap

from elock_common import LockSecret
from lock_server import metrics
from lock_server.audit_writer import AuditWriter
from lock_server.config import LockConfig
from lock_server.door import Door
from lock_server.dtls_transport import KeyDerivingCredentials, LockDtlsServer
from lock_server.errors import LockConfigError
from lock_server.refusals import RefusalDigest
from lock_server.relay import make_relay
from lock_server.resources import build_site
from lock_server.sd_notify import Notifier
from lock_server.service import LockService
from lock_server.store import LockStore

if TYPE_CHECKING:
    from lock_server.sync_client import SyncClient  # websockets only where it is needed

log = logging.getLogger(__name__)

PRUNE_SECONDS = 600.0  # how often the audit table is brought back to audit.max_rows


async def _start_sync(
    config: LockConfig, secret: LockSecret, store: LockStore, service: LockService
) -> tuple[SyncClient, asyncio.Task[None]] | None:
    """Dial the key server, and wait (a bounded time) for its list before serving.

    A key revoked while the lock was off must not open the door in the first
    seconds after a restart; a key server that is down must not keep the door
    shut for good, so after ``start_wait_seconds`` the lock serves with the list
    it has, and says so.
    """
    if config.sync is None:
        log.warning("no [sync] in the config: this lock syncs with no key server")
        return None
    from lock_server.sync_client import SyncClient

    client = SyncClient(config.sync, secret, store, service, config.data_dir)
    service.max_clock_skew = config.sync.max_clock_skew_seconds
    service.audit_listener = client.nudge
    task = asyncio.create_task(client.run(), name="elock-lock-sync")
    try:
        await asyncio.wait_for(client.in_sync.wait(), config.sync.start_wait_seconds)
        log.warning("revocation list version %d from the key server", store.revocation_version)
    except TimeoutError:
        log.warning(
            "key server not reached within %g s; serving offline with revocation list version %d",
            config.sync.start_wait_seconds,
            store.revocation_version,
        )
    return client, task


class _Housekeeping:
    """The lock's own timers: refusal digests flushed every few seconds, the audit table pruned."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        service: LockService,
        writer: AuditWriter,
        aggregate_seconds: float,
    ) -> None:
        self._loop = loop
        self._service = service
        self._writer = writer
        self._flush_every = min(5.0, aggregate_seconds)
        self._next_flush: asyncio.Handle | None = None
        self._next_prune: asyncio.Handle | None = None

    def start(self) -> None:
        self._next_flush = self._loop.call_soon(self._flush_refusals)
        self._next_prune = self._loop.call_soon(self._prune)

    def cancel(self) -> None:
        for handle in (self._next_flush, self._next_prune):
            if handle is not None:
                handle.cancel()

    def _flush_refusals(self) -> None:
        # Rescheduled whatever happens: an exception still reaches the loop's
        # handler and its log, but one bad flush must not end the digests.
        try:
            self._service.flush_refusals()
        finally:
            self._next_flush = self._loop.call_later(self._flush_every, self._flush_refusals)

    def _prune(self) -> None:
        try:
            self._writer.request_prune()  # runs in the writer's thread, off the loop
        finally:
            self._next_prune = self._loop.call_later(PRUNE_SECONDS, self._prune)


async def _listen(
    context: aiocoap.Context,
    config: LockConfig,
    credentials: KeyDerivingCredentials,
    service: LockService,
) -> None:
    """Open the DTLS listener; a refused handshake is recorded as an unauthenticated attempt."""

    def refusal(peer: str, key_id: str | None, reason: str) -> None:
        # A handshake refusal: the peer proved no key, whatever key id it claims.
        service.record_unauthenticated(peer, key_id, "handshake", reason)

    loop = asyncio.get_running_loop()
    try:
        await context._append_tokenmanaged_messagemanaged_transport(
            lambda mman: LockDtlsServer.create_server(
                (config.host, config.port),
                mman,
                log=context.log,
                loop=loop,
                server_credentials=credentials,
                refusal_sink=refusal,
                session_seconds=config.session_seconds,
            )
        )
    except OSError as exc:  # a port in use, an address this machine does not have
        reason = exc.strerror or str(exc)
        raise LockConfigError(
            f"cannot listen on {config.host}:{config.port} (lock.host, lock.port): {reason}"
        ) from None


async def _stop_sync(sync: tuple[SyncClient, asyncio.Task[None]] | None) -> None:
    if sync is not None:
        client, task = sync
        client.stop()
        task.cancel()
        await asyncio.wait({task}, timeout=5)


async def serve(config: LockConfig, *, ready: asyncio.Event | None = None) -> None:
    secret = config.load_secret()
    path = config.data_dir / "lock.sqlite3"
    store = LockStore(path)
    writer = AuditWriter(path, max_rows=config.audit.max_rows)
    door = Door(make_relay(config.relay, config.data_dir), config.open_seconds)
    service = LockService(
        config=config,
        store=store,
        door=door,
        audit=writer,
        refusals=RefusalDigest(config.audit.aggregate_seconds),
    )
    sync = await _start_sync(config, secret, store, service)
    context = aiocoap.Context(serversite=build_site(service), server_credentials=None)
    credentials = KeyDerivingCredentials(secret)
    exporter: metrics.Exporter | None = None
    notifier = Notifier()
    loop = asyncio.get_running_loop()
    housekeeping = _Housekeeping(loop, service, writer, config.audit.aggregate_seconds)
    try:
        await _listen(context, config, credentials, service)
        exporter = metrics.start(config, door)  # None unless [metrics] enabled
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        housekeeping.start()
        log.warning("lock %r listening on coaps://%s:%d", config.name, config.host, config.port)
        notifier.ready()
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        door.shutdown()  # relay off before anything else can fail
        if exporter is not None:
            exporter.close()
        notifier.stopping()
        housekeeping.cancel()
        await _stop_sync(sync)
        if context.request_interfaces:  # aiocoap's shutdown fails on a context with none
            await context.shutdown()
        service.flush_refusals(force=True)
        writer.close()
        store.close()
        log.warning("lock %r stopped, relay released", config.name)
