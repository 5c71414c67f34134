"""Secure element backends: what the RACS server drives behind a SEID.

:class:`SecureElement` is the four verbs a reader gives (power on, power off,
reset, transmit) plus a serial number for SEID allocation (seed: "How to
allocate SEID"). Two implementations:

* :class:`InProcessCard` wraps any object with ``process(apdu) -> response``,
  the entry point of the eLock applet, so tests, the demo and benchmarks run
  without a reader;
* :class:`PcscCard` talks to a PC/SC reader through pyscard. pyscard blocks, so
  each reader gets one worker thread: calls stay ordered per reader and never
  stall the event loop that serves every other session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, runtime_checkable

from racs.errors import CommandCode, HardwareError

log = logging.getLogger(__name__)
T = TypeVar("T")
# T=1, direct convention, "eLock" in the historical bytes: only a placeholder.
DEFAULT_ATR = bytes.fromhex("3B8880010000000065") + b"eLock"


@runtime_checkable
class Applet(Protocol):
    def process(self, apdu: bytes) -> bytes: ...


class SecureElement(Protocol):
    name: str

    async def power_on(self) -> bytes: ...  # the ATR

    async def power_off(self) -> None: ...

    async def reset(self, warm: bool = False) -> bytes: ...  # the ATR

    async def transmit(self, apdu: bytes) -> bytes: ...

    async def serial(self) -> str | None: ...


class InProcessCard:
    """A card whose chip is a Python object in this process.

    The applet object outlives power cycles, as a card's EEPROM does; if it
    has a ``reset()`` method, power on and reset call it so it can drop its
    transient (RAM) state. ``offload=True`` runs ``process`` in a thread, so an
    applet that computes (a TLS handshake) or blocks does not stall every other
    session on the event loop; racs.toml turns it on unless told otherwise.
    ``offload=False`` (this class's default, for tests whose applet hooks touch
    the event loop) runs it inline.
    """

    def __init__(
        self,
        applet: Applet,
        *,
        name: str = "in-process",
        atr: bytes = DEFAULT_ATR,
        serial: str | None = None,
        offload: bool = False,
    ) -> None:
        self.name = name
        self.applet = applet
        self.atr = atr
        self.offload = offload
        self.powered = False
        self._serial = serial

    def _warm_up(self) -> bytes:
        reset: Callable[[], object] | None = getattr(self.applet, "reset", None)
        if callable(reset):
            reset()
        self.powered = True
        return self.atr

    async def power_on(self) -> bytes:
        return self._warm_up()

    async def power_off(self) -> None:
        self.powered = False

    async def reset(self, warm: bool = False) -> bytes:
        return self._warm_up()

    async def transmit(self, apdu: bytes) -> bytes:
        if not self.powered:
            raise HardwareError(f"{self.name} is not powered", CommandCode.APDU)
        if self.offload:
            return await asyncio.to_thread(self.applet.process, apdu)
        return self.applet.process(apdu)

    async def serial(self) -> str | None:
        return self._serial


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as err:  # pragma: no cover - pyscard is in the racs extra
        raise HardwareError(f"pyscard is not installed: {err}") from err
    return scard


class PcscCard:
    """One PC/SC reader (by exact name) with the card in it, used exclusively."""

    def __init__(self, reader: str) -> None:
        self.name = reader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pcsc-{reader}")
        self._ctx: Any = None
        self._card: Any = None
        self._protocol: Any = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _check(self, hresult: int, what: str) -> None:
        scard = _scard()
        if hresult != scard.SCARD_S_SUCCESS:
            message = scard.SCardGetErrorMessage(hresult)
            raise HardwareError(f"{self.name}: {what} failed: {message}")

    def _connect(self) -> bytes:
        scard = _scard()
        if self._ctx is None:
            hresult, self._ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            self._check(hresult, "SCardEstablishContext")
        if self._card is None:
            protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            hresult, card, proto = scard.SCardConnect(
                self._ctx, self.name, scard.SCARD_SHARE_EXCLUSIVE, protocols
            )
            self._check(hresult, "SCardConnect")
            self._card, self._protocol = card, proto
        return self._atr()

    def _atr(self) -> bytes:
        hresult, _reader, _state, _proto, atr = _scard().SCardStatus(self._card)
        self._check(hresult, "SCardStatus")
        return bytes(atr)

    def _disconnect(self) -> None:
        scard = _scard()
        if self._card is not None:
            card, self._card = self._card, None
            self._check(scard.SCardDisconnect(card, scard.SCARD_UNPOWER_CARD), "SCardDisconnect")

    def _reconnect(self, warm: bool) -> bytes:
        scard = _scard()
        if self._card is None:
            return self._connect()
        how = scard.SCARD_RESET_CARD if warm else scard.SCARD_UNPOWER_CARD
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hresult, self._protocol = scard.SCardReconnect(
            self._card, scard.SCARD_SHARE_EXCLUSIVE, protocols, how
        )
        self._check(hresult, "SCardReconnect")
        return self._atr()

    def _transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise HardwareError(f"{self.name} is not powered", CommandCode.APDU)
        hresult, response = _scard().SCardTransmit(self._card, self._protocol, list(apdu))
        self._check(hresult, "SCardTransmit")
        return bytes(response)

    def _reader_serial(self) -> str | None:
        scard = _scard()
        was_off = self._card is None
        try:
            if was_off:
                self._connect()
            hresult, attr = scard.SCardGetAttrib(self._card, scard.SCARD_ATTR_VENDOR_IFD_SERIAL_NO)
        except HardwareError:
            return None
        finally:
            if was_off:
                self._disconnect()
        if hresult != scard.SCARD_S_SUCCESS or not attr:
            return None
        return bytes(attr).rstrip(b"\x00").decode("ascii", "replace") or None

    async def power_on(self) -> bytes:
        return await self._run(self._connect)

    async def power_off(self) -> None:
        await self._run(self._disconnect)

    async def reset(self, warm: bool = False) -> bytes:
        return await self._run(lambda: self._reconnect(warm))

    async def transmit(self, apdu: bytes) -> bytes:
        return await self._run(lambda: self._transmit(apdu))

    async def serial(self) -> str | None:
        return await self._run(self._reader_serial)


def list_pcsc_readers() -> list[str]:
    """Names of the readers pcscd knows now; empty if there is no pcscd."""
    scard = _scard()
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return []
    try:
        hresult, readers = scard.SCardListReaders(ctx, [])
        return list(readers) if hresult == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(ctx)


async def card_serial(se: SecureElement, aid: bytes) -> str | None:
    """The card's IC serial from its CPLC (GET DATA 9F7F) after selecting *aid*.

    Used with the seed's ATR.txt (ATR -> card manager AID) and cardsn.txt
    (card serial -> SEID); None when the card does not answer that way.
    """
    await se.power_on()
    try:
        select = bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid
        await se.transmit(select)
        rsp = await se.transmit(bytes.fromhex("80CA9F7F00"))
        if rsp[-2:-1] == b"\x6c":
            rsp = await se.transmit(bytes.fromhex("80CA9F7F") + rsp[-1:])
        data = rsp[:-2]
        if rsp[-2:] != b"\x90\x00" or len(data) < 3 + 16:
            return None
        cplc = data[3:] if data[:2] == b"\x9f\x7f" else data
        return (cplc[0:2] + cplc[12:16]).hex().upper()  # IC fabricator || IC serial
    finally:
        await se.power_off()
