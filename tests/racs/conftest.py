"""Fixtures for the RACS tests: a fresh PKI, in-process cards and a real TLS server."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from elock_testkit.racs_applets import ELOCK_AID, TestApplet
from elock_testkit.racs_pki import Pki, make_pki
from racs.access import AccessPolicy, AidRule, ApduFilter
from racs.apdu_log import ApduLog
from racs.backends import InProcessCard
from racs.client import RacsClient, client_ssl_context
from racs.registry import Registry, Slot
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService
from racs.session import Limits
from racs.style import ServerStyle


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("racs-pki"))


def default_policy() -> AccessPolicy:
    return AccessPolicy(
        users={
            "alice": frozenset({"card1", "card2", "shared"}),
            "bob": frozenset({"card2", "shared"}),
            "carol": frozenset({"*"}),
        },
        seid_tables={
            "card1": [
                AidRule(ELOCK_AID, False, frozenset({"alice"})),
                AidRule(None, False, frozenset()),  # any other AID: nobody
            ],
        },
        filters=[ApduFilter(False, bytes.fromhex("FFFF"), bytes.fromhex("80E6"))],
        se_default_access=True,
    )


@dataclass
class Harness:
    pki: Pki
    server: RacsServer
    applets: dict[str, TestApplet]
    clients: list[RacsClient] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def registry(self) -> Registry:
        return self.server.service.registry

    def ssl_for(self, cn: str) -> ssl.SSLContext:
        ident = self.pki.users[cn]
        return client_ssl_context(ident.cert, ident.key, self.pki.ca)

    async def connect(self, cn: str) -> RacsClient:
        client = await RacsClient.connect("127.0.0.1", self.port, self.ssl_for(cn))
        self.clients.append(client)
        return client


async def start_harness(
    pki: Pki,
    seids: list[str],
    policy: AccessPolicy | None = None,
    *,
    idle_timeout: float = 10.0,
    limits: Limits | None = None,
    style: ServerStyle = ServerStyle.ELOCK,
    apdu_log: ApduLog | None = None,
) -> Harness:
    applets = {seid: TestApplet() for seid in seids}
    registry = Registry(Slot(seid, InProcessCard(a, name=seid)) for seid, a in applets.items())
    service = RacsService(registry, policy or default_policy(), apdu_log, style=style)
    ctx = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    server = RacsServer(service, ctx, port=0, idle_timeout=idle_timeout, limits=limits)
    await server.start()
    return Harness(pki, server, applets)


@pytest.fixture
async def harness(pki: Pki) -> AsyncIterator[Harness]:
    h = await start_harness(pki, ["card1", "card2", "shared"])
    yield h
    for client in h.clients:
        await client.close()
    await h.server.close()


def raw_client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A client context that may present no certificate at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca)
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx
