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
from racs.apdu import Transmit, exchange, selected_aid, status_ok
from racs.apdu_log import ApduLog
from racs.errors import BadParameterError, CommandCode, HardwareError, RacsError
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
from racs.registry import Registry

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
        self, registry: Registry, policy: AccessPolicy, apdu_log: ApduLog | None = None
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.apdu_log = apdu_log

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
                if await self.registry.power_on(seid, ctx.sid):
                    return f"{seid} is powered on"
                return f"{seid} was already powered on, POWERON ignored"
            case Shutdown(seid=seid):
                self._check_seid(ctx, seid, CommandCode.SHUTDOWN)
                await self.registry.shutdown(seid, ctx.sid)
                return f"{seid} is powered off"
            case Reset(seid=seid, warm=warm):
                self._check_seid(ctx, seid, CommandCode.RESET)
                await self.registry.reset(seid, ctx.sid, warm)
                return f"{seid} reseted"  # the seed's wording
            case Apdu(seid=seid, apdu=apdu) if apdu is not None:
                return (await self._apdu(ctx, seid, apdu, command)).hex().upper()
        raise BadParameterError(f"{type(command).__name__} cannot be executed")

    async def _apdu(self, ctx: SessionContext, seid: str, apdu: bytes, cmd: Apdu) -> bytes:
        self._check_seid(ctx, seid, CommandCode.APDU)
        slot = self.registry.owned_slot(seid, ctx.sid, CommandCode.APDU)
        aid = selected_aid(apdu)
        if aid is not None:
            self.policy.check_select(ctx.user, seid, aid)
        # A SELECT is judged against the AID it asks for, any other APDU against
        # the AID selected before it.
        current = aid if aid is not None else slot.selected_aid
        self.policy.check_apdu(ctx.user, seid, current, apdu)
        transmit: Transmit = slot.se.transmit
        if self.apdu_log is not None:
            log_to, inner = self.apdu_log, slot.se.transmit

            async def logged(command: bytes) -> bytes:
                response = await inner(command)
                log_to.record(ctx.sid, ctx.user, seid, command, response)
                return response

            transmit = logged

        try:
            response = await exchange(transmit, apdu, cmd.options)
        except RacsError:
            raise
        except Exception as err:  # a backend bug must not read as a card answer
            log.exception("sid %d: %s failed", ctx.sid, seid)
            raise HardwareError(f"{seid}: {type(err).__name__}", CommandCode.APDU) from err
        if aid is not None and status_ok(response):
            slot.selected_aid = aid  # a failed SELECT leaves the previous selection
        return response
