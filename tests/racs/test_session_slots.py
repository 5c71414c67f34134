"""Session slots of the RACS server against peers that never authenticate.

``max_sessions`` bounds the sessions of users the server knows (a certificate
from ``client_ca``). A TCP connection that has not finished its TLS handshake
has no user yet, so it must not take a user's slot: otherwise anyone who can
reach the port, with no certificate at all, keeps the key server (the RACS
client) out by holding ``max_sessions`` bare TCP connections open.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from elock_testkit.racs_applets import TestApplet
from elock_testkit.racs_pki import Pki
from elock_testkit.waiting import async_wait_for
from racs.access import AccessPolicy
from racs.backends import InProcessCard
from racs.client import RacsClient, client_ssl_context
from racs.errors import RemoteRacsError
from racs.registry import Registry, Slot
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService


async def _server(
    pki: Pki, *, max_sessions: int, idle_timeout: float, max_user_sessions: int | None = None
) -> RacsServer:
    registry = Registry([Slot("card1", InProcessCard(TestApplet(), name="card1"))])
    policy = AccessPolicy(users={"carol": frozenset({"*"})}, se_default_access=True)
    ctx = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    server = RacsServer(
        RacsService(registry, policy),
        ctx,
        port=0,
        idle_timeout=idle_timeout,
        max_sessions=max_sessions,
        max_user_sessions=max_user_sessions,
    )
    await server.start()
    return server


async def test_unauthenticated_connections_take_no_users_session_slot(pki: Pki) -> None:
    server = await _server(pki, max_sessions=4, idle_timeout=10.0)
    bare: list[asyncio.StreamWriter] = []
    try:
        for _ in range(6):  # plain TCP, no ClientHello: no certificate, no user
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            bare.append(writer)
        await async_wait_for(lambda: len(server._tasks) >= 6, 5, "6 bare connections accepted")
        ident = pki.users["carol"]
        ctx = client_ssl_context(ident.cert, ident.key, pki.ca)
        client = await RacsClient.connect("127.0.0.1", server.port, ctx)
        try:
            assert await asyncio.wait_for(client.list_seids(), 5) == ["card1"]
        finally:
            await client.close()
    finally:
        for writer in bare:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await server.close()


async def test_max_sessions_still_bounds_authenticated_sessions(pki: Pki) -> None:
    server = await _server(pki, max_sessions=2, idle_timeout=10.0, max_user_sessions=2)
    ident = pki.users["carol"]
    ctx = client_ssl_context(ident.cert, ident.key, pki.ca)
    clients = []
    try:
        for _ in range(2):
            client = await RacsClient.connect("127.0.0.1", server.port, ctx)
            clients.append(client)
            assert await asyncio.wait_for(client.list_seids(), 5) == ["card1"]
        third = await RacsClient.connect("127.0.0.1", server.port, ctx)
        clients.append(third)
        with pytest.raises(RemoteRacsError, match="too many sessions"):
            await asyncio.wait_for(third.list_seids(), 5)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await server.close()


async def test_one_user_with_few_rights_cannot_take_every_session(pki: Pki) -> None:
    """bob may use no card here; his certificate alone must not lock carol out."""
    server = await _server(pki, max_sessions=4, idle_timeout=10.0)
    bob_id, carol_id = pki.users["bob"], pki.users["carol"]
    bob_ctx = client_ssl_context(bob_id.cert, bob_id.key, pki.ca)
    clients: list[RacsClient] = []
    try:
        for _ in range(4):  # as many sessions as the server has; each kept open
            client = await RacsClient.connect("127.0.0.1", server.port, bob_ctx)
            clients.append(client)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.list_seids(), 5)
        carol_ctx = client_ssl_context(carol_id.cert, carol_id.key, pki.ca)
        carol = await RacsClient.connect("127.0.0.1", server.port, carol_ctx)
        clients.append(carol)
        assert await asyncio.wait_for(carol.list_seids(), 5) == ["card1"]
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await server.close()
