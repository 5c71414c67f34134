"""``SecureElementPush``: write KeyContainers into a card through RACS, inside TLS#2.

One push is one RACS session (TLS#1, the key server's RACS client certificate):

1. POWERON the SEID, SELECT the eLock applet;
2. read the card's certificate (GET DATA) and check it chains to the SE issuer
   CA and names this SEID (``verify_se_certificate``); otherwise nothing is sent
   and ``UntrustedCardError`` says why;
3. TLS#2 handshake with the card's own TLS 1.3 server through TLS RECORDS
   APDUs; the certificate the card presents must be the one just checked, and
   the card must answer 9001 (it accepted our certificate) before any command;
4. the provisioning commands, all in one flight (one RACS round trip), one
   ``PushResult`` each;
5. close_notify, SHUTDOWN, end of the RACS session.

Commands are idempotent by container id, so a push that failed with a
``TransportError`` is retried as is: a container that had landed comes back
"already present", one that had not is "installed".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from elock_common.container import KeyContainer
from elock_common.errors import FormatError
from elock_common.pki import SeCertificateError, verify_se_certificate
from elock_common.provisioning_wire import (
    Command,
    MessageSplitter,
    ProvisioningError,
    Response,
    Status,
    decode_response,
    encode_delete,
    encode_install,
    encode_list,
    encode_replace,
)
from elock_push.card_link import SW_TLS_END, SW_TLS_OPEN, CardLink
from elock_push.channel import CardChannel
from elock_push.errors import (
    CardError,
    PushError,
    TlsSessionError,
    TransportError,
    UnconfirmedCommandsError,
    UntrustedCardError,
)
from elock_push.tls2 import Tls2Client
from racs.client import RacsClient, TlsVersionError

MAX_HANDSHAKE_FLIGHTS = 4


class Outcome(enum.Enum):
    INSTALLED = "installed"
    REPLACED = "replaced"
    ALREADY_PRESENT = "already present"
    DELETED = "deleted"
    NOT_FOUND = "not found"
    FAILED = "failed"


@dataclass(frozen=True)
class Install:
    container: KeyContainer


@dataclass(frozen=True)
class Replace:
    container: KeyContainer


@dataclass(frozen=True)
class Delete:
    container_id: int


Operation = Install | Replace | Delete


@dataclass(frozen=True)
class PushResult:
    container_id: int
    outcome: Outcome
    detail: str = ""
    error: PushError | None = None  # set when the whole push failed (FAILED)

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.FAILED


@dataclass
class PushReport:
    seid: str
    results: list[PushResult] = field(default_factory=list)
    containers: list[KeyContainer] = field(default_factory=list)  # public form, after LIST
    apdus: int = 0  # command APDUs the key server sent (a RACS server's own GET RESPONSE aside)
    round_trips: int = 0  # RACS requests
    seconds: float = 0.0


_DONE = {Command.INSTALL: Outcome.INSTALLED, Command.REPLACE: Outcome.REPLACED,
         Command.DELETE: Outcome.DELETED}  # fmt: skip


def _result(op: Operation, response: Response) -> PushResult:
    command, container_id = _command(op)
    if response.tag != command.response_tag:
        return PushResult(container_id, Outcome.FAILED, f"answer 0x{response.tag:02X}")
    if response.status is Status.DONE:
        return PushResult(container_id, _DONE[command])
    if response.status is Status.UNCHANGED:
        return PushResult(container_id, Outcome.ALREADY_PRESENT)
    if response.status is Status.NOT_FOUND:
        return PushResult(container_id, Outcome.NOT_FOUND)
    detail = f"{response.status.name}: {response.detail}".rstrip(": ")
    return PushResult(container_id, Outcome.FAILED, detail)


def _command(op: Operation) -> tuple[Command, int]:
    if isinstance(op, Install):
        return Command.INSTALL, op.container.container_id
    if isinstance(op, Replace):
        return Command.REPLACE, op.container.container_id
    return Command.DELETE, op.container_id


def _encode(op: Operation) -> bytes:
    if isinstance(op, Install):
        return encode_install(op.container)
    if isinstance(op, Replace):
        return encode_replace(op.container)
    return encode_delete(op.container_id)


class CardSession:
    """One TLS#2 session with a card over any ``CardChannel``: check, handshake, commands.

    ``open`` does steps 1-3 of the module's story, ``run`` sends one flight of
    commands (call it more than once: LIST, then the writes), ``close`` ends
    TLS#2 and the carrier's session. Both deliveries (RACS, a host's relay) use
    this one class, so what holds for one holds for the other.
    """

    def __init__(
        self,
        link: CardChannel,
        seid: str,
        *,
        tls2: ssl.SSLContext,
        se_issuer_ca: x509.Certificate,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.link, self.seid = link, seid
        self.tls2, self.se_issuer_ca, self.now = tls2, se_issuer_ca, now
        self._tls: Tls2Client | None = None

    def __repr__(self) -> str:
        return f"CardSession({self.seid!r}, open={self._tls is not None})"

    async def open(self, certificate: bytes | None = None) -> None:
        """SELECT, check the card's certificate, TLS#2 handshake.

        With *certificate*, the caller has selected the applet and checked that
        certificate already (``read_certificate``): only the handshake is left.
        """
        if certificate is None:
            await self.link.power_on_and_select()
            certificate = await read_certificate(self.link, self.seid, self.se_issuer_ca, self.now)
        self._tls = await _handshake(self.link, self.tls2, certificate)

    async def run(
        self, operations: Sequence[Operation], *, list_after: bool = False
    ) -> tuple[list[PushResult], list[KeyContainer]]:
        assert self._tls is not None, "open() first"
        return await _commands(self.link, self._tls, operations, list_after)

    async def list_containers(self) -> list[KeyContainer]:
        return (await self.run([], list_after=True))[1]

    async def close(self) -> None:
        """close_notify, then the carrier's session; a failure here changes nothing on the card."""
        if self._tls is not None:
            tls, self._tls = self._tls, None
            try:
                await self.link.tls(tls.close())
            except PushError:
                pass  # the commands are done and answered; the card drops the session anyway
        await self.link.shutdown()


async def read_certificate(
    link: CardChannel, seid: str, issuer_ca: x509.Certificate, now: Callable[[], float]
) -> bytes:
    """The card's certificate, once it chains to *issuer_ca* and names *seid*."""
    der = await link.certificate()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise UntrustedCardError(seid, SeCertificateError("not a certificate")) from None
    try:
        verify_se_certificate(cert, issuer_ca, seid, now())
    except SeCertificateError as exc:
        raise UntrustedCardError(seid, exc) from exc
    return der


class SecureElementPush:
    """Pushes through RACS: one RACS session (TLS#1) and one TLS#2 session per push."""

    def __init__(
        self,
        *,
        racs_host: str,
        racs_port: int,
        racs_tls: ssl.SSLContext,
        tls2: ssl.SSLContext,
        se_issuer_ca: x509.Certificate,
        server_hostname: str | None = None,
        block: int = 240,
        timeout: float = 30.0,
        now: Callable[[], float] = time.time,
        ask_server_to_fetch: bool = True,  # MORE=/FETCH= on every APDU (docs/racs.md)
    ) -> None:
        self.racs_host, self.racs_port = racs_host, racs_port
        self.racs_tls, self.tls2 = racs_tls, tls2
        self.se_issuer_ca = se_issuer_ca
        self.server_hostname = server_hostname
        self.block, self.timeout, self.now = block, timeout, now
        self.ask_server_to_fetch = ask_server_to_fetch

    def __repr__(self) -> str:
        return f"SecureElementPush({self.racs_host}:{self.racs_port})"

    async def install(self, seid: str, container: KeyContainer) -> PushResult:
        return await self._one(seid, Install(container))

    async def replace(self, seid: str, container: KeyContainer) -> PushResult:
        return await self._one(seid, Replace(container))

    async def delete(self, seid: str, container_id: int) -> PushResult:
        return await self._one(seid, Delete(container_id))

    async def list_containers(self, seid: str) -> list[KeyContainer]:
        return (await self.push(seid, [], list_after=True)).containers

    async def _one(self, seid: str, op: Operation) -> PushResult:
        """One operation; a push-level failure becomes FAILED with its ``error``."""
        try:
            (result,) = (await self.push(seid, [op])).results
        except PushError as exc:
            return PushResult(_command(op)[1], Outcome.FAILED, exc.reason, exc)
        return result

    async def _connect(self, seid: str) -> tuple[RacsClient, CardLink]:
        """TLS#1 to the RACS server and a ``CardLink`` over it, both within ``timeout``.

        The push's deadline starts here: connecting, every exchange after it
        and SHUTDOWN share it, so a RACS server that answers slowly or never
        cannot hold the push (and the worker) past ``timeout``. Every way
        connecting fails is a ``TransportError``.
        """
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            racs = await RacsClient.connect(
                self.racs_host, self.racs_port, self.racs_tls,
                server_hostname=self.server_hostname, timeout=self.timeout,
            )  # fmt: skip
        except TlsVersionError as exc:
            raise TransportError(f"cannot use RACS: {exc}") from exc
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise TransportError(f"cannot reach RACS: {type(exc).__name__}: {exc}") from exc
        link = CardLink(
            racs, seid, block=self.block, ask_server_to_fetch=self.ask_server_to_fetch,
            deadline=deadline, timeout=self.timeout,
        )  # fmt: skip
        return racs, link

    @contextlib.asynccontextmanager
    async def session(self, seid: str) -> AsyncIterator[CardSession]:
        """A RACS session to *seid* and a ``CardSession`` (not yet opened) over it."""
        racs, link = await self._connect(seid)
        try:
            yield CardSession(link, seid, tls2=self.tls2, se_issuer_ca=self.se_issuer_ca,
                              now=self.now)  # fmt: skip
        finally:
            await racs.close()

    async def push(
        self, seid: str, operations: Sequence[Operation], *, list_after: bool = False
    ) -> PushReport:
        """Run *operations* in one TLS#2 session; raise ``PushError`` if the session fails."""
        started = time.monotonic()
        racs, link = await self._connect(seid)
        report = PushReport(seid)
        session = CardSession(link, seid, tls2=self.tls2, se_issuer_ca=self.se_issuer_ca,
                              now=self.now)  # fmt: skip
        try:
            await session.open()
            report.results, report.containers = await session.run(operations, list_after=list_after)
            await session.close()
        finally:
            await racs.close()
            report.apdus, report.round_trips = link.apdus, link.round_trips
            report.seconds = time.monotonic() - started
        return report


async def _handshake(link: CardChannel, ctx: ssl.SSLContext, certificate: bytes) -> Tls2Client:
    tls = Tls2Client(ctx)
    tls.handshake_step()
    answer, sw = await link.tls(tls.data_to_send(), reset=True)
    for _ in range(MAX_HANDSHAKE_FLIGHTS):
        tls.receive(answer)
        try:
            done = tls.handshake_step()
        except ssl.SSLError as exc:
            raise TlsSessionError(f"TLS#2 handshake failed: {exc.reason}") from exc
        if done:
            break
        if sw == SW_TLS_END:
            raise TlsSessionError("the card ended the TLS#2 handshake")
        answer, sw = await link.tls(tls.data_to_send())
    else:
        raise TlsSessionError("TLS#2 handshake did not finish")
    if tls.peer_certificate() != certificate:
        raise TlsSessionError("the card presented another certificate in TLS#2")
    answer, sw = await link.tls(tls.data_to_send())  # our Finished: did the card accept us?
    if sw != SW_TLS_OPEN:
        tls.receive(answer)
        raise TlsSessionError(f"the card refused the key server: {_alert(tls)}")
    return tls


async def _commands(
    link: CardChannel, tls: Tls2Client, ops: Sequence[Operation], list_after: bool
) -> tuple[list[PushResult], list[KeyContainer]]:
    messages = [_encode(op) for op in ops] + ([encode_list()] if list_after else [])
    if not messages:
        return [], []
    tls.send(b"".join(messages))
    try:
        answer, sw = await link.tls(tls.data_to_send())
    except CardError as exc:  # a status word is no proof either way: only TLS#2 is
        raise UnconfirmedCommandsError(exc) from exc
    tls.receive(answer)
    try:
        data = tls.read()
    except ssl.SSLError as exc:
        raise TlsSessionError(f"TLS#2 failed: {exc.reason}") from exc
    responses, containers = read_answers(data, list_after=list_after)
    if len(responses) != len(messages):
        why = "the card ended TLS#2" if sw == SW_TLS_END else "answers missing"
        raise TlsSessionError(f"{why}: {len(responses)} of {len(messages)} answers")
    results = [_result(op, r) for op, r in zip(ops, responses, strict=False)]
    return results, containers


def read_answers(data: bytes, *, list_after: bool) -> tuple[list[Response], list[KeyContainer]]:
    """The card's answers inside TLS#2, and the LIST at their end if one was asked for.

    Whatever the card sent, only ``TlsSessionError`` comes out: a broken TLV
    header (``FramingError``) or a bad LIST entry is the card's fault, not ours.
    """
    try:
        responses = [decode_response(t, v or b"") for t, v in MessageSplitter().feed(data)]
        containers = responses[-1].containers() if list_after and responses else []
    except (FormatError, ValueError, ProvisioningError) as exc:
        raise TlsSessionError(f"unreadable answer from the card: {exc}") from exc
    return responses, containers


def _alert(tls: Tls2Client) -> str:
    try:
        tls.read()
    except ssl.SSLError as exc:
        return str(exc.reason)
    return "no alert"
