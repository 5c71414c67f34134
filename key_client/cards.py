"""Reaching the eLock applet: PC/SC readers, or a card file run in this process.

Whatever carries the APDUs, ``AppletChannel`` speaks the applet's commands
(docs/apdu.md) and maps status words to the key host's errors, so ``coap-open``
and the phone app get the same answers from a SIM, a USB reader or the
virtual card.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from elock_common import card_protocol as c
from elock_common import tlv
from elock_common.apdu import encode_command, exchange
from elock_common.container import parse_list
from elock_common.errors import FormatError
from key_client.channel import KeyInfo, OpenStep
from key_client.errors import (
    CardBlockedError,
    CardError,
    CardMissingError,
    NoSuchKeyError,
    PinRequiredError,
    WrongPinError,
)

Transmit = Callable[[bytes], bytes]
EXTENDED_LE = 65536  # every eLock answer in one exchange (docs/apdu.md)
SW_NO_DATA = 0x6A88  # referenced data not found
_STEP_NAMES = {c.INS_OPEN: "OPEN", c.INS_DATAGRAMS: "DATAGRAMS", c.INS_TIMER: "TIMER"}


class AppletChannel:
    """The applet's commands over any transmit function (APDU in, APDU out)."""

    def __init__(self, transmit: Transmit, *, close: Callable[[], None] = lambda: None) -> None:
        self._transmit = transmit
        self._close = close
        self._closed = False
        self._started = time.monotonic()
        self._exchange(c.CLA_ISO, c.INS_SELECT, c.AID, p1=c.P1_SELECT_BY_NAME, what="SELECT")

    def __enter__(self) -> AppletChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let the card go (a PC/SC connection, a card file's lock); safe to call twice."""
        close, self._close = self._close, lambda: None
        close()

    def key_server(self) -> str:
        """The URL of the key server this card syncs with (``docs/apdu.md``, KEY SERVER)."""
        apdu = encode_command(c.CLA_PROPRIETARY, c.INS_KEY_SERVER, 0, 0, b"", le=EXTENDED_LE)
        data, sw = exchange(self._transmit, apdu)
        if sw == SW_NO_DATA:
            raise CardError("the card names no key server (personalize --key-server)")
        if sw != 0x9000:
            raise _card_error(sw, "KEY SERVER")
        text = data.decode("ascii", "replace")
        if not text.startswith(("https://", "http://")) or not text.isprintable():
            raise CardError("the card's key server URL is malformed")
        return text

    def relay(self, apdu: bytes) -> bytes:
        """One APDU exactly as given, its response as the card gave it (the sync relay).

        Whoever calls this checks the command first (``key_client.sync``): the
        channel itself is the card's transport and has no policy of its own.
        """
        return self._transmit(apdu)

    def keys(self) -> list[KeyInfo]:
        data = self._exchange(c.CLA_PROPRIETARY, c.INS_LIST, what="LIST")
        try:
            containers = parse_list(data)
        except FormatError as exc:
            raise CardError(f"the card's key list is malformed: {exc}") from None
        return [
            KeyInfo(k.container_id, k.label, k.uri, k.not_before, k.not_after, k.pin_required)
            for k in containers
        ]

    def verify_pin(self, pin: str) -> None:
        if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 8):
            raise CardError("a PIN is 4 to 8 digits")
        self._exchange(
            c.CLA_ISO, c.INS_VERIFY, pin.encode("ascii"), p2=c.P2_PIN_CARD, le=None, what="VERIFY"
        )

    def begin(self, container_id: int, now: float, *, retransmit: float | None = None) -> OpenStep:
        items = [(c.TAG_CONTAINER, bytes([container_id])), _now()]
        if retransmit is not None:
            ms = min(max(round(retransmit * 1000), 1), 0xFFFF)
            items.append((c.TAG_RETRANSMIT_MS, ms.to_bytes(2, "big")))
        return self._step(c.INS_OPEN, tlv.encode_all(items), now)

    def feed(self, datagrams: list[bytes], now: float) -> OpenStep:
        items = [_now(), *((c.TAG_DATAGRAM_IN, d) for d in datagrams[: c.MAX_DATAGRAMS_IN])]
        return self._step(c.INS_DATAGRAMS, tlv.encode_all(items), now)

    def timeout(self, now: float) -> OpenStep:
        return self._step(c.INS_TIMER, tlv.encode_all([_now()]), now)

    def abort(self) -> None:
        """End any Open and let go of the card; once is enough, twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            self._exchange(c.CLA_PROPRIETARY, c.INS_CLOSE, what="CLOSE")
        except CardError:
            pass  # the card may be gone; there is nothing left to clean up then
        finally:
            self._close()

    def _step(self, ins: int, data: bytes, now: float) -> OpenStep:
        answer = self._exchange(c.CLA_PROPRIETARY, ins, data, what=_STEP_NAMES[ins])
        state, out, timer, code, payload, reason = c.STATE_RUNNING, [], None, None, b"", None
        alert = kind = None
        progress = c.PROGRESS_NO_ANSWER
        try:
            fields = tlv.decode(answer)
        except FormatError as exc:
            raise CardError(f"the card's Open step is malformed: {exc}") from None
        for tag, value in fields:
            if tag == c.TAG_STATE:
                state = value[0]
            elif tag == c.TAG_DATAGRAM_OUT:
                out.append(value)
            elif tag == c.TAG_TIMER:
                timer = now + int.from_bytes(value, "big") / 1000
            elif tag == c.TAG_COAP_CODE:
                code = f"{value[0] >> 5}.{value[0] & 0x1F:02d}"
            elif tag == c.TAG_COAP_PAYLOAD:
                payload = value
            elif tag == c.TAG_REASON:
                reason = value.decode("ascii", "replace")
            elif tag == c.TAG_ALERT:
                alert = value[0]
            elif tag == c.TAG_PROGRESS and len(value) == 1:
                progress = value[0]
            elif tag == c.TAG_FAILURE and len(value) == 1:
                kind = value[0]
        if state == c.STATE_FAILED:
            reason = (reason or "failed") + (f" (alert {alert})" if alert is not None else "")
            return OpenStep(
                datagrams=out, failure=reason, alert=alert, failure_kind=kind, progress=progress
            )
        if state == c.STATE_DONE:
            return OpenStep(datagrams=out, code=code or "0.00", payload=payload, progress=progress)
        return OpenStep(datagrams=out, timer=timer, progress=progress)

    def _exchange(
        self,
        cla: int,
        ins: int,
        data: bytes = b"",
        *,
        p1: int = 0,
        p2: int = 0,
        le: int | None = EXTENDED_LE,
        what: str,
    ) -> bytes:
        body, sw = exchange(self._transmit, encode_command(cla, ins, p1, p2, data, le=le))
        if sw != 0x9000:
            raise _card_error(sw, what)
        return body


def _now() -> tuple[int, bytes]:
    return c.TAG_NOW, int(time.time() * 1000).to_bytes(8, "big")


def _card_error(sw: int, what: str) -> CardError | NoSuchKeyError:
    if sw & 0xFFF0 == 0x63C0:
        return WrongPinError(sw & 0x0F)
    if sw == 0x6983:
        return CardBlockedError("the PIN is blocked: ask the key's administrator")
    if sw == 0x6982:
        return PinRequiredError("this key needs the PIN")
    if sw == 0x6A82:
        return (
            NoSuchKeyError("no such key in the card")
            if what != "SELECT"
            else CardMissingError("the card has no eLock applet")
        )
    if sw == 0x6985 and what == "OPEN":
        return CardError("the card refused to start: the key is outside its validity")
    if sw == 0x6985 and what in ("DATAGRAMS", "TIMER"):
        return CardError("the card's Open ended under the key host (the card was reset?)")
    return CardError(f"{what} failed: the card answered {sw:04X}")


def connect(*, reader: str | None = None, card_file: Path | None = None) -> AppletChannel:
    """The applet in ``card_file``, in ``reader``, or in the first reader that has it."""
    if card_file is not None:
        return _in_process(card_file)
    return _pcsc(reader)


def _in_process(card_file: Path) -> AppletChannel:
    # A card file run in this process is a virtual card driver: it reaches the
    # applet through its public entry point, as pcscd would.
    from firmware.virtual import CardFileError, InProcessCard

    try:
        card = InProcessCard(card_file)
    except CardFileError as exc:
        raise CardMissingError(str(exc)) from None
    try:
        return AppletChannel(card.transmit, close=card.close)
    except BaseException:
        card.close()
        raise


def _pcsc(wanted: str | None) -> AppletChannel:
    try:
        from smartcard.Exceptions import (
            CardConnectionException,
            NoCardException,
            SmartcardException,
        )
        from smartcard.scard import SCARD_SHARE_EXCLUSIVE
        from smartcard.System import readers
    except ImportError:
        raise CardMissingError("pyscard is not installed (pip install 'elock[keyhost]')") from None
    try:
        names = readers()
    except Exception as exc:  # pyscard raises bare exceptions when pcscd is not running
        raise CardMissingError(f"no PC/SC service (is pcscd running?): {exc}") from None
    candidates = [r for r in names if wanted is None or str(r) == wanted or wanted in str(r)]
    if not candidates:
        raise CardMissingError(f"no reader named {wanted!r}" if wanted else "no smartcard reader")
    problems = []
    for reader in candidates:
        connection = reader.createConnection()
        try:
            # Exclusive, until close: in shared mode another program could send OPEN
            # between our VERIFY and our OPEN and spend the PIN on a key of its choice,
            # or end our Open. Closing unpowers the card (pyscard's default), so a PIN
            # verified for an Open that never started does not outlive this channel.
            connection.connect(mode=SCARD_SHARE_EXCLUSIVE)
        except NoCardException:
            problems.append(f"{reader}: no card")
            _release(connection)
            continue
        except CardConnectionException as exc:
            problems.append(f"{reader}: cannot have the card to itself ({exc})")
            _release(connection)
            continue

        def transmit(
            apdu: bytes, connection: object = connection, name: str = str(reader)
        ) -> bytes:
            try:
                data, sw1, sw2 = connection.transmit(list(apdu))  # type: ignore[attr-defined]
            except SmartcardException as exc:  # the card was pulled, the reader or pcscd went
                raise CardMissingError(f"lost the card in {name}: {exc}") from None
            return bytes(data) + bytes([sw1, sw2])

        def close(connection: object = connection) -> None:
            try:
                try:
                    connection.disconnect()  # type: ignore[attr-defined]
                finally:
                    _release(connection)
            except SmartcardException:
                pass  # the card or pcscd is gone already: nothing is left to let go of

        try:
            return AppletChannel(transmit, close=close)
        except CardError as exc:
            problems.append(f"{reader}: {exc}")
            close()
    raise CardMissingError("no eLock card found (" + "; ".join(problems) + ")")


def _release(connection: object) -> None:
    """Give back the connection's PC/SC context now: pyscard would otherwise release it
    from ``__del__``, whenever the collector runs, and raise there if pcscd has gone."""
    release = getattr(connection, "release", None)  # pyscard >= 2.1 holds a context
    if release is not None:
        release()
