"""``/v1/card-sync``: a card's host dials in, and the key server pushes through it.

A phone's SIM cannot be dialled (carrier NAT), so the phone dials here over a
WebSocket and relays APDUs (``elock_common.card_sync``, ``key_client.sync``);
the key server runs the same ``CardSession`` and card visit as its worker does
through RACS, over ``elock_push.RelayLink``.

The host holds no credential, so the order of checks is what keeps this open
door cheap and quiet:

1. the ``SyncGate`` (rate per address, syncs at once, in all and per address) before
   anything else;
2. the card's certificate (GET DATA through the host) must chain to the SE
   issuer CA and name a SEID; otherwise ``Refused``, and nothing was read
   from the database;
3. TLS#2's handshake with the card: only the card holding that certificate's
   key completes it;
4. only then the database: the SEID registered as reached through its host,
   and its due keys. An unknown SEID and a card with nothing due get the same
   answer (``Outcome`` with zeros), so a sync reveals no SEID's existence.

Each container is installed or deleted whole or not at all (the card's
journal, TLS#2); a sync that breaks off leaves its keys due for the next sync
(``provisioning.record_released``), so a retry finishes the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.orm import Session

from elock_common import card_sync as wire
from elock_common.pki import SeCertificateError, verify_se_certificate
from elock_push import CardSession, PushError, RelayLink
from key_provisioner.api.state import AppState
from key_provisioner.db.base import utcnow
from key_provisioner.se_visit import CardWork, visit
from key_provisioner.services import provisioning, secure_elements
from key_provisioner.services.provisioning import SePushJob
from key_provisioner.services.sync_gate import SyncGate

log = logging.getLogger(__name__)
router = APIRouter(tags=["card sync"])
T = TypeVar("T")
HELLO_SECONDS = 10.0
NOT_ACCEPTED = "the card's certificate is not accepted"


class _HostLeftError(ConnectionError):
    """The host closed the WebSocket, or sent what is not a text frame."""


# How Starlette says the host is gone: ``WebSocketDisconnect`` when the peer left before a
# send (uvicorn's ``ClientDisconnected``), ``RuntimeError`` for a use after the close.
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


@dataclass
class _Connection:
    """What ``RelayLink`` needs, over Starlette's WebSocket; a closed one raises ``OSError``."""

    ws: WebSocket

    async def send_text(self, frame: str) -> None:
        try:
            await self.ws.send_text(frame)
        except _GONE as exc:  # Starlette: after the close, or the peer gone (1006)
            raise _HostLeftError(f"the host closed the connection ({type(exc).__name__})") from None

    async def receive_text(self) -> str:
        try:
            message = await self.ws.receive()
        except _GONE as exc:
            raise _HostLeftError(f"the host closed the connection ({type(exc).__name__})") from None
        text = message.get("text")
        if message["type"] != "websocket.receive" or not isinstance(text, str):
            raise _HostLeftError("the host closed the connection or sent a binary frame")
        return text


def gate_of(state: AppState) -> SyncGate | None:
    if state.push_clients is None:
        return None
    if state.card_sync_gate is None:
        push = state.push_clients.settings
        state.card_sync_gate = SyncGate(per_minute=push.sync_per_minute,
                                        concurrent=push.sync_concurrent,
                                        per_address=push.sync_per_address)  # fmt: skip
    return state.card_sync_gate


@router.websocket(wire.PATH)
async def card_sync(ws: WebSocket) -> None:
    state: AppState = ws.app.state.elock
    await ws.accept()
    conn = _Connection(ws)
    gate = gate_of(state)
    if gate is None:
        await _end(conn, wire.Refused("this key server does not provision cards"))
        return
    address = ws.client.host if ws.client else "unknown"
    wait = gate.admit(address, time.monotonic())
    if wait:
        log.info("card sync from %s refused: rate or capacity (%d s)", address, wait)
        await _end(conn, wire.Refused("too many syncs: try again later", retry_after=wait))
        return
    try:
        assert state.push_clients is not None
        # The relay stops at 3 x timeout (a TransportError: claimed keys are released);
        # this is the backstop for the rest (the database), never meant to fire mid-visit.
        timeout = state.push_clients.settings.timeout
        deadline = asyncio.get_running_loop().time() + 3 * timeout
        async with asyncio.timeout(4 * timeout):
            message = await _sync(state, conn, deadline)
    except TimeoutError:
        message = wire.Refused("the sync took too long")
    finally:
        gate.done(address)
    await _end(conn, message)
    log.info("card sync from %s ended: %s", address, wire.encode(message)[:200])


async def _sync(state: AppState, conn: _Connection, deadline: float) -> wire.ServerMessage:
    assert state.push_clients is not None
    clients = state.push_clients
    try:
        hello = wire.decode_host_message(await asyncio.wait_for(conn.receive_text(), HELLO_SECONDS))
    except (wire.SyncFormatError, OSError, TimeoutError):
        return wire.Refused("a sync starts with a hello")
    if not isinstance(hello, wire.Hello) or hello.version != wire.VERSION:
        return wire.Refused(f"this key server speaks card-sync version {wire.VERSION}")
    link = RelayLink(conn, timeout=clients.settings.timeout, deadline=deadline)
    try:
        await link.send(wire.Progress("checking the card"))
        await link.power_on_and_select()
        der = await link.certificate()
        seid = _checked_seid(der, clients.se_issuer_ca)
        if seid is None:
            return wire.Refused(NOT_ACCEPTED)
        card = CardSession(link, seid, tls2=clients.tls2, se_issuer_ca=clients.se_issuer_ca)
        await card.open(certificate=der)  # the card proves it holds the certificate's key
    except PushError as exc:
        log.info("card sync ended before any work: %s", exc.reason)
        return wire.Refused(f"the sync broke off: {exc.reason}"[: wire.MAX_TEXT])
    lease = 2 * clients.settings.timeout + 5
    jobs = await _db(state, lambda s: _claim(s, state, seid, lease))
    if jobs:
        await _progress(link, f"updating {len(jobs)} key(s)")
        work = await visit(card, jobs, opened=True)
    else:
        work = CardWork()
        await card.close()
    await _db(state, lambda s: _record(s, seid, work))
    if work.error is not None:
        log.info("card %s: sync broke off: %s", seid, work.error.reason)
    return wire.Outcome(work.added, work.removed, work.failed, work.reason()[: wire.MAX_TEXT])


def _checked_seid(der: bytes, issuer_ca: x509.Certificate) -> str | None:
    """The SEID the certificate names, once it chains to the SE issuer CA; None otherwise."""
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        seid = str(names[0].value) if len(names) == 1 else ""
        verify_se_certificate(cert, issuer_ca, seid, time.time())
    except (ValueError, SeCertificateError):
        return None
    return seid


def _claim(session: Session, state: AppState, seid: str, lease: float) -> list[SePushJob]:
    element = secure_elements.host_delivered(session, seid)
    if element is None:
        return []  # not ours to serve, or behind RACS: the same answer as "nothing due"
    return provisioning.claim_for_card(session, state.box, element, now=utcnow(), lease=lease)


def _record(session: Session, seid: str, work: CardWork) -> None:
    now = utcnow()
    for settled in work.done:
        provisioning.record_done(session, settled.job, settled.text, now=now)
    for settled in work.refused:
        provisioning.record_failed(session, settled.job, settled.text, now=now)
    for job in work.open:
        why = work.error.reason if work.error else "the sync broke off"
        provisioning.record_released(session, job, f"host sync: {why}", now=now)
    element = secure_elements.host_delivered(session, seid)
    if element is not None and work.error is None:
        element.synced_at = now
        session.commit()


async def _progress(link: RelayLink, stage: str) -> None:
    try:
        await link.send(wire.Progress(stage))
    except PushError:
        pass  # the next script finds the host gone and says so


async def _end(conn: _Connection, message: wire.ServerMessage) -> None:
    try:
        await conn.send_text(wire.encode(message))
        await conn.ws.close()
    except _GONE:
        pass  # the host is gone already


async def _db(state: AppState, action: Callable[[Session], T]) -> T:
    def run() -> T:
        with state.sessions() as session:
            return action(session)

    return await asyncio.to_thread(run)
