"""The hosted secure elements and the seed's locking policy.

Seed, "Security Policy": every SE is *unlocked* (powered off) or *locked* by
the one TLS session (SID) that powered it on; only that SID may use it, and
when the session ends everything it used is powered off and unlocked. The
claim is made before the first ``await`` of POWERON, so two sessions racing
for one SE on the event loop cannot both win.

:meth:`Registry.release_all` is what every exit path of a connection calls
(clean close, disconnect mid-block, garbage, idle timeout, server shutdown); it
never raises, because a card that fails to power off must still be unlocked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from racs.backends import SecureElement
from racs.errors import CommandCode, HardwareError, IllegalCommandError, InUseError, RacsError

log = logging.getLogger(__name__)


@dataclass
class Slot:
    seid: str
    se: SecureElement
    owner: int | None = None  # SID of the locking session
    powered: bool = False
    selected_aid: bytes | None = None  # last AID selected since power on


class Registry:
    def __init__(self, slots: Iterable[Slot] = ()) -> None:
        self.slots: dict[str, Slot] = {}
        for slot in slots:
            self.add(slot)

    def add(self, slot: Slot) -> None:
        if slot.seid in self.slots:
            raise ValueError(f"duplicate SEID {slot.seid}")
        self.slots[slot.seid] = slot

    def seids(self) -> list[str]:
        return sorted(self.slots)

    def owned_by(self, sid: int) -> list[str]:
        return [s.seid for s in self.slots.values() if s.owner == sid]

    def _get(self, seid: str) -> Slot:
        return self.slots[seid]  # the caller has checked that the SEID exists

    def _not_other(self, slot: Slot, sid: int, command: CommandCode) -> None:
        if slot.owner is not None and slot.owner != sid:
            raise InUseError(f"{slot.seid} is locked by another session", command)

    async def power_on(self, seid: str, sid: int) -> bool:
        """Lock and power on; False if this session had it powered already."""
        slot = self._get(seid)
        self._not_other(slot, sid, CommandCode.POWERON)
        if slot.powered:
            return False
        slot.owner = sid  # claim before awaiting: the race ends here
        try:
            await slot.se.power_on()
        except RacsError as err:
            slot.owner = None
            raise HardwareError(f"{seid}: {err.reason}", CommandCode.POWERON) from err
        slot.powered, slot.selected_aid = True, None
        log.info("sid %d powered on %s", sid, seid)
        return True

    async def shutdown(self, seid: str, sid: int) -> None:
        slot = self._get(seid)
        self._not_other(slot, sid, CommandCode.SHUTDOWN)
        try:
            if slot.powered:
                await slot.se.power_off()
        finally:
            slot.owner, slot.powered, slot.selected_aid = None, False, None
        log.info("sid %d shut down %s", sid, seid)

    def owned_slot(self, seid: str, sid: int, command: CommandCode) -> Slot:
        """The slot if this session holds it powered on, else the error that says why."""
        slot = self._get(seid)
        self._not_other(slot, sid, command)
        if not slot.powered:
            raise IllegalCommandError(f"{seid} is powered off, POWERON is required", command)
        return slot

    async def reset(self, seid: str, sid: int, warm: bool) -> None:
        slot = self.owned_slot(seid, sid, CommandCode.RESET)
        try:
            await slot.se.reset(warm)
        except RacsError as err:
            raise HardwareError(f"{seid}: {err.reason}", CommandCode.RESET) from err
        slot.selected_aid = None

    async def release_all(self, sid: int) -> int:
        """Power off and unlock every SE of session *sid*; how many there were."""
        released = 0
        for slot in list(self.slots.values()):
            if slot.owner != sid:
                continue
            released += 1
            try:
                if slot.powered:
                    await slot.se.power_off()
            except Exception:
                log.exception("sid %d: powering off %s failed; unlocking it anyway", sid, slot.seid)
            finally:
                slot.owner, slot.powered, slot.selected_aid = None, False, None
        if released:
            log.info("sid %d ended: %d secure element(s) powered off and unlocked", sid, released)
        return released
