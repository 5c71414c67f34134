"""What each RACS command does, for one authenticated user: the service plane.

The seed splits RACS into an access plane and a service plane. The session
(:mod:`racs.session`) only knows the grammar; this module runs a parsed command
against the registry (locks, power) under the access policy (SEIDs, AIDs, APDU
filters) and returns the text after ``+0YZ NNN``, or raises the
:class:`RacsError` that becomes the error line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from racs.access import AccessPolicy
from racs.apdu import exchange, selected_aid, status_ok
from racs.apdu_log import ApduLog
from racs.errors import (
    BadParameterError,
    CommandCode,
    HardwareError,
    RacsError,
    UnauthorizedError,
)
from racs.protocol import (
    Apdu,
    Echo,
    GetVersion,
    ListSeids,
    PowerOn,
    RacsCommand,
    Reset,
    SetVersion,
    Shutdown,
)
from racs.registry import Registry, Slot
from racs.style import ServerStyle

log = logging.getLogger(__name__)
VERSION = "0.2"  # the protocol version of the seed's example and the open server
SUPPORTED_VERSIONS = (VERSION,)


@dataclass
class SessionContext:
    """Who is asking: the TLS session id (SID) and the certificate CN (user id)."""

    sid: int
    user: str
    version: str = VERSION


class RacsService:
    def __init__(
        self,
        registry: Registry,
        policy: AccessPolicy,
        apdu_log: ApduLog | None = None,
        *,
        style: ServerStyle = ServerStyle.ELOCK,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.apdu_log = apdu_log
        self.style = style

    def _check_seid(self, ctx: SessionContext, seid: str, command: CommandCode) -> None:
        known = seid in self.registry.slots
        self.policy.check_seid(ctx.user, seid, known, command)

    async def execute(self, ctx: SessionContext, command: RacsCommand) -> str:
        """Run one command; the text of its success line, or raise its error."""
        match command:
            case GetVersion():
                return ctx.version
            case SetVersion(version=version):
                if version not in SUPPORTED_VERSIONS:
                    raise BadParameterError(
                        f"version {version} is not supported", CommandCode.SET_VERSION
                    )
                ctx.version = version
                return f"Version {version} is running"
            case Echo(text=text):
                return text
            case ListSeids():
                return " ".join(self.policy.visible_seids(ctx.user, self.registry.seids()))
            case PowerOn(seid=seid):
                self._check_seid(ctx, seid, CommandCode.POWERON)
                already = not await self.registry.power_on(seid, ctx.sid)
                return self.style.powered_on(seid, already)
            case Shutdown(seid=seid):
                self._check_seid(ctx, seid, CommandCode.SHUTDOWN)
                await self.registry.shutdown(seid, ctx.sid)
                return self.style.powered_off(seid)
            case Reset(seid=seid, warm=warm):
                self._check_seid(ctx, seid, CommandCode.RESET)
                await self.registry.reset(seid, ctx.sid, warm)
                return self.style.reset(seid, warm)
            case Apdu(seid=seid, apdu=apdu) if apdu is not None:
                return (await self._apdu(ctx, seid, apdu, command)).hex().upper()
        raise BadParameterError(f"{type(command).__name__} cannot be executed")

    async def _apdu(self, ctx: SessionContext, seid: str, apdu: bytes, cmd: Apdu) -> bytes:
        self._check_seid(ctx, seid, CommandCode.APDU)
        slot = self.registry.owned_slot(seid, ctx.sid, CommandCode.APDU)
        aid = self._admit(ctx, slot, apdu, first=True)
        inner, log_to = slot.se.transmit, self.apdu_log
        sent = 0

        async def transmit(command: bytes) -> bytes:
            """Every APDU that reaches the card, the request's own and what MORE/FETCH
            or a 6Cxx re-send made of it, passes the same access check first."""
            nonlocal sent
            if sent:
                self._admit(ctx, slot, command, first=False)
            sent += 1
            response = await inner(command)
            if log_to is not None:
                log_to.record(ctx.sid, ctx.user, seid, command, response)
            return response

        try:
            response = await exchange(transmit, apdu, self.style.chaining(cmd.options))
        except RacsError:
            raise
        except Exception as err:  # a backend bug must not read as a card answer
            log.exception("sid %d: %s failed", ctx.sid, seid)
            raise HardwareError(f"{seid}: {type(err).__name__}", CommandCode.APDU) from err
        if aid is not None and status_ok(response):
            slot.selected_aid = aid  # a failed SELECT leaves the previous selection
        return response

    def _admit(self, ctx: SessionContext, slot: Slot, apdu: bytes, *, first: bool) -> bytes | None:
        """Raise unless *ctx*'s user may send *apdu* to *slot* now; the AID it selects.

        A SELECT is judged against the AID it asks for, any other APDU against
        the AID selected before it. Only the request's own APDU may select:
        a SELECT that MORE/FETCH would make is refused, since the server could
        not tell which application the card then runs.
        """
        aid = selected_aid(apdu)
        if aid is not None:
            if not first:
                raise UnauthorizedError(
                    f"FETCH= may not make a SELECT on {slot.seid}", CommandCode.APDU
                )
            self.policy.check_select(ctx.user, slot.seid, aid)
        current = aid if aid is not None else slot.selected_aid
        self.policy.check_apdu(ctx.user, slot.seid, current, apdu)
        return aid
