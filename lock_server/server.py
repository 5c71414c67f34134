"""Running the lock: wire config, store, relay and CoAP together; stop fail-secure."""

from __future__ import annotations

import asyncio
import logging
import signal

import aiocoap

from lock_server import metrics
from lock_server.config import LockConfig
from lock_server.door import Door
from lock_server.dtls_transport import KeyDerivingCredentials, LockDtlsServer
from lock_server.relay import make_relay
from lock_server.resources import build_site
from lock_server.service import LockService
from lock_server.store import LockStore

log = logging.getLogger(__name__)


async def serve(config: LockConfig, *, ready: asyncio.Event | None = None) -> None:
    secret = config.load_secret()
    store = LockStore(config.data_dir / "lock.sqlite3")
    door = Door(make_relay(config.relay, config.data_dir), config.open_seconds)
    service = LockService(config=config, store=store, door=door)
    context = aiocoap.Context(serversite=build_site(service), server_credentials=None)
    credentials = KeyDerivingCredentials(secret)
    exporter: metrics.Exporter | None = None

    def refusal(peer: str, key_id: str | None, reason: str) -> None:
        service.record_refusal(peer, key_id, "handshake", reason)

    try:
        await context._append_tokenmanaged_messagemanaged_transport(
            lambda mman: LockDtlsServer.create_server(
                (config.host, config.port),
                mman,
                log=context.log,
                loop=asyncio.get_running_loop(),
                server_credentials=credentials,
                refusal_sink=refusal,
            )
        )
        exporter = metrics.start(config, door)  # None unless [metrics] enabled
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.warning("lock %r listening on coaps://%s:%d", config.name, config.host, config.port)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        door.shutdown()  # relay off before anything else can fail
        if exporter is not None:
            exporter.close()
        await context.shutdown()
        store.close()
        log.warning("lock %r stopped, relay released", config.name)
