"""Real parts for the push tests: cards with an identity, a RACS server, a cuttable link.

Everything is made fresh by ``elock_common.pki`` in a temporary directory; no
private key is committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from elock_common import pki
from elock_common.container import KeyContainer
from elock_push import SecureElementPush, tls2_context
from firmware import identity
from firmware.applet import Applet
from firmware.store import Eeprom, Store
from racs.access import AccessPolicy
from racs.apdu_log import ApduLog
from racs.backends import InProcessCard
from racs.client import client_ssl_context
from racs.registry import Registry, Slot
from racs.server import RacsServer, server_ssl_context
from racs.service import RacsService
from racs.style import ServerStyle

Hook = Callable[[bytes, Applet], bytes]


def make_card(paths: pki.PkiPaths, seid: str, *, cert_seid: str | None = None) -> Applet:
    """A card personalized as ``elock-se personalize --seid`` does it (key made in the store)."""
    store = Store(Eeprom())
    public_key = identity.generate_key(store)
    issuer_cert = pki.load_certificate(paths.se_issuer_ca.cert)
    issuer_key = pki.load_private_key(paths.se_issuer_ca.key)
    cert = pki.issue_se_certificate(
        issuer_cert, issuer_key, public_key, cert_seid or seid, time.time()
    )
    identity.install_certificate(store, cert, pki.load_certificate(paths.key_server_ca.cert))
    return Applet(store)


def make_card_with(
    paths: pki.PkiPaths, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> Applet:
    """A card holding a certificate no honest issuer made (written straight into its store)."""
    store = Store(Eeprom())
    with store.transaction() as tx:
        tx.put(identity.CELL_KEY, key.private_numbers().private_value.to_bytes(32, "big"))
    identity.install_certificate(store, cert, pki.load_certificate(paths.key_server_ca.cert))
    return Applet(store)


@dataclass
class TappedApplet:
    """The applet behind RACS, with a hook that may change or act on each APDU first."""

    applet: Applet
    seen: list[bytes] = field(default_factory=list)
    before: Hook | None = None
    after: Callable[[bytes, bytes], None] | None = None

    def process(self, apdu: bytes) -> bytes:
        if self.before is not None:
            apdu = self.before(apdu, self.applet)
        self.seen.append(apdu)
        response = self.applet.process(apdu)
        if self.after is not None:
            self.after(apdu, response)
        return response

    def reset(self) -> None:
        self.applet.reset()


def is_command_record(apdu: bytes, applet: Applet) -> bool:
    """A TLS RECORDS APDU sent while TLS#2 is open: it carries provisioning commands."""
    return apdu[:2] == b"\x00\xd8" and applet.tls is not None and applet.tls.session_sw == 0x9001


class CutProxy:
    """A TCP relay between the key server and RACS that a test can cut at any moment."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._transports += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Drop every connection at once (RST), as a network failure would."""
        for writer in self._transports:
            writer.transport.abort()
        self._transports.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


def pusher_for(paths: pki.PkiPaths, port: int) -> SecureElementPush:
    """The key server's push client, with the certificates ``init_pki`` made."""
    user = paths.racs_users["keyserver"]
    return SecureElementPush(
        racs_host="127.0.0.1",
        racs_port=port,
        racs_tls=client_ssl_context(user.cert, user.key, paths.racs_ca.cert),
        tls2=tls2_context(paths.key_server.cert, paths.key_server.key, paths.se_issuer_ca.cert),
        se_issuer_ca=pki.load_certificate(paths.se_issuer_ca.cert),
    )


@dataclass
class Racs:
    paths: pki.PkiPaths
    server: RacsServer
    cards: dict[str, TappedApplet]

    @property
    def port(self) -> int:
        return self.server.port

    def pusher(self, port: int | None = None) -> SecureElementPush:
        return pusher_for(self.paths, port or self.port)

    async def close(self) -> None:
        """Stop the server and close its APDU log (no file left for the garbage collector)."""
        await self.server.close()
        if self.server.service.apdu_log is not None:
            self.server.service.apdu_log.close()

    async def released(self, seid: str, timeout: float = 5.0) -> None:
        """Wait until the RACS server has unlocked *seid* (after a cut connection)."""
        deadline = time.monotonic() + timeout
        while self.server.service.registry.slots[seid].owner is not None:
            assert time.monotonic() < deadline, f"{seid} still locked"
            await asyncio.sleep(0.01)


async def start_racs(
    paths: pki.PkiPaths,
    cards: dict[str, Applet],
    apdu_log: Path | None = None,
    *,
    port: int = 0,
    style: ServerStyle = ServerStyle.ELOCK,
) -> Racs:
    tapped = {seid: TappedApplet(applet) for seid, applet in cards.items()}
    registry = Registry(Slot(seid, InProcessCard(t, name=seid)) for seid, t in tapped.items())
    policy = AccessPolicy(users={"keyserver": frozenset({"*"})}, se_default_access=True)
    log = ApduLog(apdu_log) if apdu_log is not None else None
    ctx = server_ssl_context(paths.racs_server.cert, paths.racs_server.key, paths.racs_ca.cert)
    service = RacsService(registry, policy, log, style=style)
    server = RacsServer(service, ctx, port=port, idle_timeout=10)
    await server.start()
    return Racs(paths, server, tapped)


def door_key(label: str, uri: str, identity_: str, psk: str, container_id: int = 1) -> KeyContainer:
    return KeyContainer(container_id, label, uri, identity_.encode(), psk.encode())
